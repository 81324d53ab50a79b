#pragma once
/// \file
/// One token of a test-time memory, as expressions: the forward step and the scalar whose
/// gradients are the backward step.
///
/// Design note: the backward through one inner update is a second differentiation. For the
/// step `state' = step(state, x)` with retrieval loss `L_t(state')`, and the adjoint
/// `A` of `state'` coming from later tokens, the scalar
///     Phi = sum(A_M * M') + sum(A_S * S') + L_t
/// has as gradients the adjoint of `state` (with respect to M and S) and this token's
/// contribution to every meta-parameter's gradient. `M'` contains the inner gradient
/// `grad(inner_loss, M)`, so `grad(Phi, W_K)` differentiates it again. The step is a type;
/// time is a run-time loop over it, never unrolled into types.

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
    /// grads[M] += A^T X over `count` tokens, for each batched M: rows (count, width), the
    /// tokens x (count, d).
    template <class T, class Params>
    static void add(Params& grads, const T* rows, const T* x, std::size_t count, std::size_t d) {
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            ((batched<M> ? mnemo::detail::blas::gemm_acc(true, false, int(rows_of<M>()), int(d), int(count), T(1),
                                                         rows + offset[J], int(width), x, int(d), T(1),
                                                         grads[M{}].data(), int(d))
                         : void()),
             ...);
        }(std::index_sequence_for<M...>{});
    }
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
    using target = symbol<"target", shape<model::out>>;
    using loss_scale = symbol<"loss_scale", shape<>>;
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
    static constexpr auto target = typename sy::target{};

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
        return Spec::rule::apply(typename sy::template param<I>{}, typename sy::template surprise<I>{},
                                 inner_grad<I>(), gates);
    }
    template <std::size_t I>
    static constexpr auto next_param = updated<I>().p_next;
    template <std::size_t I>
    static constexpr auto next_surprise = updated<I>().s_next;

    template <std::size_t... I>
    static constexpr auto make_y(std::index_sequence<I...>) {
        return model::apply(q, next_param<I>...);
    }
    /// The retrieval with the updated memory, and its loss.
    static constexpr auto y = make_y(seq{});
    static constexpr auto outer_loss = Spec::outer_loss::apply(y, target);

    template <std::size_t... I>
    static constexpr auto make_phi(std::index_sequence<I...>) {
        return ((sum(hadamard(typename sy::template adj_param<I>{}, next_param<I>)) +
                 sum(hadamard(typename sy::template adj_surprise<I>{}, next_surprise<I>))) +
                ... + hadamard(typename sy::loss_scale{}, outer_loss));
    }
    /// Phi: its gradients are the backward step (see the design note above).
    static constexpr auto phi = make_phi(seq{});
};

}  // namespace mnemo::memory
