#pragma once
/// \file
/// One token of a test-time memory, as expressions: the forward step and the scalar whose
/// gradients are the backward step.
///
/// Design note: the backward through one inner update is a second differentiation. For the
/// step `(state', y) = step(state, x)`, the adjoint `A` of `state'` coming from later
/// tokens and the upstream adjoint `dY` of the retrieval y (from the layers above, or from
/// an outer loss: outer_step), the scalar
///     Phi = sum(A_M * M') + sum(A_S * S') + sum(dY * y)
/// has as gradients the adjoint of `state` (with respect to M and S), this token's
/// contribution to every meta-parameter's gradient, and the gradient with respect to the
/// token x itself. `M'` contains the inner gradient `grad(inner_loss, M)`, so
/// `grad(Phi, W_K)` differentiates it again. The step is a type; time is a run-time loop
/// over it, never unrolled into types.

#include <algorithm>
#include <array>
#include <utility>

#include "mnemo/detail/blas.hpp"
#include "mnemo/expr.hpp"
#include "mnemo/memory/gates.hpp"
#include "mnemo/memory/losses.hpp"
#include "mnemo/memory/models.hpp"
#include "mnemo/memory/rules.hpp"

namespace mnemo::memory {

/// A memory, put together from its parts:
///   - `D`: the token size;
///   - `Model`: the inner model (models.hpp), `InnerLoss` (losses.hpp), `Rule` (rules.hpp),
///     `Gates` (gates.hpp), `OuterLoss` (losses.hpp);
///   - `NormalizeKQ`: l2-normalise keys and queries.
/// Projections: `k = W_K x` (Model::in), `v = W_V x` (Model::out), `q = W_Q x` (Model::in).
template <std::size_t D, class Model, class InnerLoss = l2_loss, class Rule = titans_rule,
          class Gates = const_gates, class OuterLoss = mse, bool NormalizeKQ = false>
struct spec {
    static constexpr std::size_t d = D;
    using model = Model;
    using inner_loss = InnerLoss;
    using rule = Rule;
    using gates = Gates;
    using outer_loss = OuterLoss;
    static constexpr bool normalize_kq = NormalizeKQ;
};

namespace detail {

template <char A, char B, std::size_t I>
constexpr auto indexed_name() {
    static_assert(I < 10, "mnemo: a memory has at most 10 parameter tensors.");
    if constexpr (B == 0) {
        const char s[] = {A, '[', char('0' + I), ']', 0};
        return fixed_string<5>(s);
    } else {
        const char s[] = {A, B, '[', char('0' + I), ']', 0};
        return fixed_string<6>(s);
    }
}

template <class List, std::size_t I>
using shape_at = mnemo::detail::type_at_t<List, I>;

/// A per-token gradient that is a product with the token, summed over tokens as one
/// product `A^T X`, so that a step need only compute `a`:
///   - `outer(a, x)`, the gradient of a projection `W x` of the token (`a` a vector: `rows`
///     = its length);
///   - `s * x` or `x * s` with `s` a scalar, the gradient of a vector `w` used as `w . x`,
///     such as a data-dependent gate's weights (`rows` = 1: the sum is `s^T X`).
template <class E, class Token>
struct outer_with_token : std::false_type {};
template <class A, class Token>
struct outer_with_token<node<outer_op, A, Token>, Token> : std::true_type {
    using left = A;
    static constexpr std::size_t rows = shape_of<A>::size;
};
template <class A>
struct scalar_times_token : std::bool_constant<shape_of<A>::rank == 0> {
    using left = A;
    static constexpr std::size_t rows = 1;
};
template <class A, class Token>
struct outer_with_token<node<mul_op, A, Token>, Token> : scalar_times_token<A> {};
template <class A, class Token>
struct outer_with_token<node<mul_op, Token, A>, Token> : scalar_times_token<A> {};
template <class Token>
struct outer_with_token<node<mul_op, Token, Token>, Token> : std::false_type {};  // x * x: not of either form

/// The per-token gradients of `Phi` to the meta-parameters `Metas` (a list), with those of
/// the forms above batched: a step outputs only `a`, one row per token holds the `a`s of
/// all batched metas side by side (`offset[J]`, `width` numbers), and `add` sums them over
/// the tokens as one product `A^T X` per meta.
template <class Phi, class Token, class Metas>
struct batched_rows;
template <class Phi, class Token, class... M>
struct batched_rows<Phi, Token, mnemo::detail::list<M...>> {
    template <class X>
    using grad_of = outer_with_token<unwrap_t<decltype(grad(Phi{}, X{}))>, Token>;
    template <class X>
    static constexpr bool batched = grad_of<X>::value;
    /// What a step computes for meta X: `a` where batched, else the whole gradient.
    template <class X>
    static constexpr auto output() {
        if constexpr (batched<X>) return typename grad_of<X>::left{};
        else return grad(Phi{}, X{});
    }
    /// The numbers a batched meta X takes in a token's row (0 if not batched).
    template <class X>
    static constexpr std::size_t rows_of() {
        if constexpr (batched<X>) return grad_of<X>::rows;
        else return 0;
    }
    static constexpr std::array<std::size_t, sizeof...(M) + 1> offset = [] {
        std::array<std::size_t, sizeof...(M) + 1> off{};
        std::size_t o = 0, k = 0;
        ((off[k++] = o, o += rows_of<M>()), ...);
        off[k] = o;
        return off;
    }();
    static constexpr std::size_t width = offset[sizeof...(M)];
    /// One token's meta outputs of `plan`, from its result `First` on (in the order of M):
    /// a batched meta's `a` copied into the token's `row`, any other gradient added to grads.
    template <std::size_t First, class Plan, class Params, class T>
    static void collect(const Plan& plan, Params& grads, T* row) {
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            (
                [&] {
                    const T* src = plan.template data<First + J>();
                    if constexpr (batched<M>) {
                        std::copy_n(src, rows_of<M>(), row + offset[J]);
                    } else {
                        T* dst = grads[M{}].data();
                        for (std::size_t k = 0; k < M::shape::size; ++k) dst[k] += src[k];
                    }
                }(),
                ...);
        }(std::index_sequence_for<M...>{});
    }
    // --- The token gradient. ------------------------------------------------------------
    // Where the token enters through a batched meta M (a projection `M x`, a weight vector
    // `M . x`), grad(Phi, x) has the term `transpose(M) * a` (or `s * M`), with the same `a`
    // (or `s`) as M's row: summed over the tokens, those terms are the product `A M`. The
    // gradient's sum is split at compile time into the terms of that form (counted per M)
    // and the rest, which a step computes token by token.
    using token_grad = unwrap_t<decltype(grad(Phi{}, Token{}))>;
    template <class E>
    struct terms {
        using type = mnemo::detail::list<E>;
    };
    template <class A, class B>
    struct terms<node<add_op, A, B>> {
        using type = typename mnemo::detail::list_cat<typename terms<A>::type, typename terms<B>::type>::type;
    };
    /// Whether the term E is meta X's part of the token gradient.
    template <class E, class X, bool Batched = batched<X>>
    struct is_part_of : std::false_type {};
    template <class E, class X>
    struct is_part_of<E, X, true>
        : std::bool_constant<std::is_same_v<E, node<matmul_op, node<transpose_op, X>, typename grad_of<X>::left>> ||
                             std::is_same_v<E, node<mul_op, typename grad_of<X>::left, X>>> {};
    template <class E>
    static constexpr bool is_batched_term = (is_part_of<E, M>::value || ...);
    template <class X, class... E>
    static constexpr std::size_t count_in(mnemo::detail::list<E...>) {
        return (std::size_t(is_part_of<E, X>::value) + ... + 0);
    }
    template <class... E>
    static constexpr auto rest_of(mnemo::detail::list<E...>) {
        return (zero_of<typename Token::shape>{} + ... +
                std::conditional_t<is_batched_term<E>, zero_of<typename Token::shape>, E>{});
    }
    using token_terms = typename terms<token_grad>::type;
    /// How many times meta M's product `A M` enters the token gradient (0, or 1).
    template <class X>
    static constexpr std::size_t token_uses = count_in<X>(token_terms{});
    /// The token gradient's terms that are not batched: computed by a step per token.
    using token_rest = decltype(rest_of(token_terms{}));
    static constexpr bool has_token_rest = !is_zero_v<token_rest>;
    static constexpr bool any_token_use = ((token_uses<M> > 0) || ... || false);
    /// The scratch `add` and `add_token` need: (width, d) numbers.
    static constexpr std::size_t stack_size(std::size_t d) { return width * d; }
    /// dX += A M over `count` tokens for every batched meta M of the token gradient, as one
    /// product dX += A [M_1; M_2; ...]: rows (count, width), dX (count, d), `stack` scratch.
    template <class T, class Params>
    static void add_token(const Params& params, const T* rows, std::size_t count, std::size_t d, T* dx, T* stack) {
        if constexpr (any_token_use) {
            // The metas stacked in the rows' order, each scaled by its number of terms.
            [&]<std::size_t... J>(std::index_sequence<J...>) {
                (
                    [&] {
                        if constexpr (batched<M>) {
                            const std::size_t n = rows_of<M>() * d;
                            const T* src = params[M{}].data();
                            T* dst = stack + offset[J] * d;
                            const T k = T(token_uses<M>);
                            for (std::size_t i = 0; i < n; ++i) dst[i] = k * src[i];
                        }
                    }(),
                    ...);
            }(std::index_sequence_for<M...>{});
            mnemo::detail::blas::gemm_acc(false, false, int(count), int(d), int(width), T(1), rows, int(width), stack,
                                          int(d), T(1), dx, int(d));
        }
    }

    /// grads[M] += A^T X over `count` tokens for each batched M, as one product A^T X
    /// (width, d) into `stack`, then each meta's rows of it added to its gradient: rows
    /// (count, width), the tokens x (count, d).
    template <class T, class Params>
    static void add(Params& grads, const T* rows, const T* x, std::size_t count, std::size_t d, T* stack) {
        if constexpr (width > 0) {
            mnemo::detail::blas::gemm_acc(true, false, int(width), int(d), int(count), T(1), rows, int(width), x,
                                          int(d), T(0), stack, int(d));
            [&]<std::size_t... J>(std::index_sequence<J...>) {
                (
                    [&] {
                        if constexpr (batched<M>) {
                            const std::size_t n = rows_of<M>() * d;
                            const T* src = stack + offset[J] * d;
                            T* dst = grads[M{}].data();
                            for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
                        }
                    }(),
                    ...);
            }(std::index_sequence_for<M...>{});
        }
    }
};

}  // namespace detail

namespace detail {
/// What a rule returns: `update{p_next, s_next}` (make_update).
template <class U>
concept rule_result = requires(U u) {
    u.p_next;
    u.s_next;
};
}  // namespace detail

/// The symbols of the state and the data of one step.
template <class Spec>
struct step_symbols {
    using model = typename Spec::model;
    using shapes = typename model::params;
    static constexpr std::size_t n = shapes::size;
    static constexpr std::size_t d = Spec::d;

    /// Memory parameter i before the step, its surprise, the memory at which the inner
    /// gradient is taken (chunked form), and the adjoints of the next parameter and surprise.
    template <std::size_t I>
    using param = symbol<detail::indexed_name<'M', 0, I>(), detail::shape_at<shapes, I>>;
    template <std::size_t I>
    using surprise = symbol<detail::indexed_name<'S', 0, I>(), detail::shape_at<shapes, I>>;
    template <std::size_t I>
    using grad_point = symbol<detail::indexed_name<'G', 0, I>(), detail::shape_at<shapes, I>>;
    template <std::size_t I>
    using adj_param = symbol<detail::indexed_name<'d', 'M', I>(), detail::shape_at<shapes, I>>;
    template <std::size_t I>
    using adj_surprise = symbol<detail::indexed_name<'d', 'S', I>(), detail::shape_at<shapes, I>>;

    using token = symbol<"x", shape<d>>;
    /// The upstream adjoint dL/dy of the step's retrieval (the layer's input gradient).
    using retrieval_adjoint = symbol<"dY", shape<model::out>>;
    /// The retrieval and the target, as the outer loss sees them (outer_step).
    using retrieval = symbol<"y", shape<model::out>>;
    using target = symbol<"target", shape<model::out>>;
    using wk = symbol<"WK", shape<model::in, d>>;
    using wv = symbol<"WV", shape<model::out, d>>;
    using wq = symbol<"WQ", shape<model::in, d>>;
};

/// The expressions of one step. `Chunked`: the inner gradient is taken at the symbols
/// `G[i]` (the memory at the chunk's start) instead of `M[i]`. `FirstOrder`: the inner
/// gradient is a constant for the outer differentiation.
template <class Spec, bool Chunked, bool FirstOrder>
struct step {
    using sy = step_symbols<Spec>;
    using model = typename Spec::model;
    static constexpr std::size_t n = sy::n;
    using seq = std::make_index_sequence<n>;

    static constexpr auto x = typename sy::token{};

    template <class V>
    static constexpr auto maybe_normalize(V v) {
        if constexpr (Spec::normalize_kq) return l2_normalize(v);
        else return v;
    }
    static constexpr auto k = maybe_normalize(typename sy::wk{} * x);
    static constexpr auto v = typename sy::wv{} * x;
    static constexpr auto q = maybe_normalize(typename sy::wq{} * x);

    template <std::size_t I>
    using at = std::conditional_t<Chunked, typename sy::template grad_point<I>, typename sy::template param<I>>;

    template <std::size_t... I>
    static constexpr auto make_inner(std::index_sequence<I...>) {
        return Spec::inner_loss::apply(model::apply(k, at<I>{}...), v);
    }
    /// The inner loss at the token (the "surprise" reported for diagnostics).
    static constexpr auto inner_loss = make_inner(seq{});

    template <std::size_t I>
    static constexpr auto inner_grad() {
        auto g = grad(inner_loss, at<I>{});
        if constexpr (FirstOrder) return stop_gradient(g);
        else return g;
    }

    static constexpr auto gates = Spec::gates::make(x);

    template <std::size_t I>
    static constexpr auto updated() {
        using P = typename sy::template param<I>;
        using S = typename sy::template surprise<I>;
        using U = decltype(Spec::rule::apply(P{}, S{}, inner_grad<I>(), gates));
        static_assert(detail::rule_result<U>,
                      "mnemo: an update rule's apply(p, s, g, gates) must return make_update(p_next, s_next): the "
                      "parameter and the surprise after the step (rules.hpp).");
        if constexpr (detail::rule_result<U>) return Spec::rule::apply(P{}, S{}, inner_grad<I>(), gates);
        else return make_update(P{}, S{});
    }
    template <std::size_t I>
    static constexpr auto next_param = updated<I>().p_next;
    template <std::size_t I>
    static constexpr auto next_surprise = updated<I>().s_next;

    template <std::size_t... I>
    static constexpr auto make_y(std::index_sequence<I...>) {
        return model::apply(q, next_param<I>...);
    }
    /// The retrieval with the updated memory.
    static constexpr auto y = make_y(seq{});

    template <std::size_t... I>
    static constexpr auto make_phi(std::index_sequence<I...>) {
        return ((sum(hadamard(typename sy::template adj_param<I>{}, next_param<I>)) +
                 sum(hadamard(typename sy::template adj_surprise<I>{}, next_surprise<I>))) +
                ... + sum(hadamard(typename sy::retrieval_adjoint{}, y)));
    }
    /// Phi: its gradients are the backward step (see the design note above).
    static constexpr auto phi = make_phi(seq{});
};

/// The parts of a memory, as they are named when two of them use the same symbol.
namespace part {
struct the_library;  // the token, the state, the projections WK, WV, WQ, y, dY, the target
struct the_model;
struct the_gates;
struct the_update_rule;
struct the_inner_loss;
struct the_outer_loss;
}  // namespace part

namespace detail {

template <class E>
using symbols_in = typename mnemo::detail::symbols_of<typename mnemo::detail::topo_order<void, unwrap_t<E>>::type>::type;

template <class L, class Drop>
struct without;
template <class... S, class Drop>
struct without<mnemo::detail::list<S...>, Drop> {
    using type = typename mnemo::detail::list_cat<std::conditional_t<mnemo::detail::contains_type_v<Drop, S>,
                                                                     mnemo::detail::list<>, mnemo::detail::list<S>>...>::type;
};

/// The list without repeats, in the order of first appearance.
template <class Out, class In>
struct unique_list {
    using type = Out;
};
template <class... O, class S, class... R>
struct unique_list<mnemo::detail::list<O...>, mnemo::detail::list<S, R...>> {
    using type = typename unique_list<
        std::conditional_t<(std::is_same_v<O, S> || ...), mnemo::detail::list<O...>, mnemo::detail::list<O..., S>>,
        mnemo::detail::list<R...>>::type;
};
template <class L>
using unique_t = typename unique_list<mnemo::detail::list<>, L>::type;

/// The first symbol of A that is also in B, or void.
template <class A, class B>
struct first_common {
    using type = void;
};
template <class S, class... R, class B>
struct first_common<mnemo::detail::list<S, R...>, B> {
    using type = std::conditional_t<mnemo::detail::contains_type_v<B, S>, S,
                                    typename first_common<mnemo::detail::list<R...>, B>::type>;
};

/// The symbols each part of the memory `Spec` uses of its own (what the library passes
/// it, its inputs, left out).
template <class Spec>
struct part_symbols {
    using sy = step_symbols<Spec>;
    using model_t = typename Spec::model;
    static constexpr std::size_t n = sy::n;
    using k = symbol<"k~", shape<model_t::in>>;
    using pred = symbol<"pred~", shape<model_t::out>>;
    using value = symbol<"v~", shape<model_t::out>>;
    using g = symbol<"g~", typename sy::template param<0>::shape>;
    using eta = symbol<"eta~", shape<>>;
    using alpha = symbol<"alpha~", shape<>>;
    using theta = symbol<"theta~", shape<>>;

    template <std::size_t... I>
    static auto state_symbols(std::index_sequence<I...>)
        -> mnemo::detail::list<typename sy::template param<I>..., typename sy::template surprise<I>...,
                               typename sy::template grad_point<I>..., typename sy::template adj_param<I>...,
                               typename sy::template adj_surprise<I>...>;
    using state = decltype(state_symbols(std::make_index_sequence<n>{}));
    using library = typename mnemo::detail::list_cat<
        state, mnemo::detail::list<typename sy::token, typename sy::retrieval_adjoint, typename sy::retrieval,
                                   typename sy::target, typename sy::wk, typename sy::wv, typename sy::wq>>::type;

    template <std::size_t... I>
    static auto model_expr(std::index_sequence<I...>) -> decltype(model_t::apply(k{}, typename sy::template param<I>{}...));
    using model = typename without<symbols_in<decltype(model_expr(std::make_index_sequence<n>{}))>,
                                   typename mnemo::detail::list_cat<state, mnemo::detail::list<k>>::type>::type;

    using gate_values_t = decltype(Spec::gates::make(typename sy::token{}));
    using gates = typename without<unique_t<typename mnemo::detail::list_cat<symbols_in<decltype(gate_values_t{}.eta)>,
                                                                             symbols_in<decltype(gate_values_t{}.alpha)>,
                                                                             symbols_in<decltype(gate_values_t{}.theta)>>::type>,
                                   mnemo::detail::list<typename sy::token>>::type;

    using rule_u = decltype(Spec::rule::apply(typename sy::template param<0>{}, typename sy::template surprise<0>{}, g{},
                                              make_gates(eta{}, alpha{}, theta{})));
    template <class U, bool Ok = rule_result<U>>
    struct rule_syms {
        using type = mnemo::detail::list<>;
    };
    template <class U>
    struct rule_syms<U, true> {
        using type = unique_t<
            typename mnemo::detail::list_cat<symbols_in<decltype(U{}.p_next)>, symbols_in<decltype(U{}.s_next)>>::type>;
    };
    using rule = typename without<typename rule_syms<rule_u>::type,
                                  mnemo::detail::list<typename sy::template param<0>, typename sy::template surprise<0>,
                                                      g, eta, alpha, theta>>::type;

    using inner = typename without<symbols_in<decltype(Spec::inner_loss::apply(pred{}, value{}))>,
                                   mnemo::detail::list<pred, value>>::type;
    using outer = typename without<
        symbols_in<decltype(Spec::outer_loss::apply(typename sy::retrieval{}, typename sy::target{}))>,
        mnemo::detail::list<typename sy::retrieval, typename sy::target>>::type;
};

/// True when `Sym` is void; else the symbol `Sym` is used both by `PartA` and by `PartB`,
/// which then share one value silently (symbols are identified by name and shape).
template <class Sym, class PartA, class PartB>
inline constexpr bool symbol_of_one_part = std::is_void_v<Sym>;

template <class A, class B, class PartA, class PartB>
constexpr bool disjoint() {
    using common = typename first_common<A, B>::type;
    static_assert(symbol_of_one_part<common, PartA, PartB>,
                  "mnemo: two parts of this memory use a symbol of the same name (see symbol_of_one_part<symbol, "
                  "part, part> in this message): they would share one value silently (a rule's own 'theta' would "
                  "become the gates' hyperparameter, a model's 'wa' the gate's weight). Rename one of them.");
    return std::is_void_v<common>;
}

/// Every pair of parts of `Spec` is disjoint (one static_assert names the first clash).
template <class Spec>
constexpr bool parts_disjoint() {
    using ps = part_symbols<Spec>;
    using namespace mnemo::memory::part;
    return disjoint<typename ps::model, typename ps::library, the_model, the_library>() &&
           disjoint<typename ps::gates, typename ps::library, the_gates, the_library>() &&
           disjoint<typename ps::rule, typename ps::library, the_update_rule, the_library>() &&
           disjoint<typename ps::inner, typename ps::library, the_inner_loss, the_library>() &&
           disjoint<typename ps::outer, typename ps::library, the_outer_loss, the_library>() &&
           disjoint<typename ps::model, typename ps::gates, the_model, the_gates>() &&
           disjoint<typename ps::model, typename ps::rule, the_model, the_update_rule>() &&
           disjoint<typename ps::model, typename ps::inner, the_model, the_inner_loss>() &&
           disjoint<typename ps::model, typename ps::outer, the_model, the_outer_loss>() &&
           disjoint<typename ps::gates, typename ps::rule, the_gates, the_update_rule>() &&
           disjoint<typename ps::gates, typename ps::inner, the_gates, the_inner_loss>() &&
           disjoint<typename ps::gates, typename ps::outer, the_gates, the_outer_loss>() &&
           disjoint<typename ps::rule, typename ps::inner, the_update_rule, the_inner_loss>() &&
           disjoint<typename ps::rule, typename ps::outer, the_update_rule, the_outer_loss>() &&
           disjoint<typename ps::inner, typename ps::outer, the_inner_loss, the_outer_loss>();
}

}  // namespace detail

/// The outer loss of one token, on its own: the memory is a layer mapping tokens to
/// retrievals, and a loss on a retrieval is one way to give the layer its upstream adjoint
/// `dY = loss_scale * d loss / d y` (the built-in `meta_gradient`). It reads only the
/// retrieval and the target.
template <class Spec>
struct outer_step {
    using sy = step_symbols<Spec>;
    static constexpr auto loss = Spec::outer_loss::apply(typename sy::retrieval{}, typename sy::target{});
    static constexpr auto dloss = grad(loss, typename sy::retrieval{});
};

}  // namespace mnemo::memory
