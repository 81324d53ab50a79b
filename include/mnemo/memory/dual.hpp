#pragma once
/// \file
/// The dual form of the chunked update: a chunk's inner gradients, its momentum/forget
/// recurrence and its retrievals as matrix products, without materialising the per-token
/// memories; and the exact backward through it.
///
/// Design note. It applies when three facts hold, each read off the user's expressions at
/// compile time (`has_linear_dual_form_v<Spec>`), never declared per model:
///   1. the model is linear in its one parameter tensor: `Model::apply(k, W)` is the
///      expression `W * k`. Then the inner gradient at the chunk's start `G` is the outer
///      product `u k^T` with `u = d l(pred, v) / d pred` at `pred = G k`, for any inner loss;
///   2. the update rule is linear in (P, S, g) with scalar coefficients: on the paths from
///      its results to `P`, `S` and `g` there are only `+`, `-` and products with scalars
///      that do not depend on them, and no term without them. Its coefficients
///      `P' = a P + b S + c g`, `S' = e S + f g` are the rule's derivatives, taken
///      symbolically on a 1x1 instance of the rule;
///   3. the inner and outer losses use no learned symbol of their own.
/// Within a chunk of b tokens starting from (M0, S0), with g_s = u_s k_s^T,
///     M_t = alpha_t M0 + beta_t S0 + sum_{s<=t} Gamma_ts g_s,
///     S_t = eps_t S0 + sum_{s<=t} Phi_ts g_s,
/// where the scalar coefficients follow from the per-token (a, b, c, e, f) by an O(b^2)
/// recurrence, so the retrievals are
///     Y = diag(alpha) Q M0^T + diag(beta) Q S0^T + (Gamma o Q K^T) U
/// and the chunk's end state is two rank-b products: everything is BLAS-3. The backward is
/// the adjoint of these matrix identities (written once, here), composed with the symbolic
/// derivatives of the per-token parts (projections, gates, coefficients, inner and outer
/// losses), which the library derives and compiles like every other step. The same holds
/// in blocks of several chunks, and so for the sequential form (chunk 1), with each token's
/// prediction by forward substitution over its block (see `run_sequence`). Where a fact does
/// not hold (a normalising rule; an MLP memory takes memory/dual_mlp.hpp's form in chunked
/// runs), the compiled step runs token by token.

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "mnemo/detail/blas.hpp"
#include "mnemo/detail/lanes.hpp"
#include "mnemo/eval.hpp"
#include "mnemo/memory/step.hpp"

namespace mnemo::memory {
namespace dual_detail {

using mnemo::detail::contains;
using mnemo::detail::list;

template <class E, class... X>
inline constexpr bool mentions = (contains<E, X>::value || ...);

template <class E>
inline constexpr bool is_scalar_v = shape_of<E>::rank == 0;

/// `E` is a sum of terms, each one of `P, S, G` times scalars that depend on none of them.
template <class E, class P, class S, class G>
struct scalar_linear : std::bool_constant<std::is_same_v<E, P> || std::is_same_v<E, S> || std::is_same_v<E, G>> {};
template <class A, class B, class P, class S, class G>
struct scalar_linear<node<add_op, A, B>, P, S, G>
    : std::bool_constant<mentions<A, P, S, G> && mentions<B, P, S, G> && scalar_linear<A, P, S, G>::value &&
                         scalar_linear<B, P, S, G>::value> {};
template <class A, class B, class P, class S, class G>
struct scalar_linear<node<sub_op, A, B>, P, S, G>
    : std::bool_constant<mentions<A, P, S, G> && mentions<B, P, S, G> && scalar_linear<A, P, S, G>::value &&
                         scalar_linear<B, P, S, G>::value> {};
template <class A, class P, class S, class G>
struct scalar_linear<node<neg_op, A>, P, S, G> : scalar_linear<A, P, S, G> {};
template <class A, class B, class P, class S, class G>
struct scalar_linear<node<mul_op, A, B>, P, S, G>
    : std::bool_constant<(is_scalar_v<A> && !mentions<A, P, S, G> && scalar_linear<B, P, S, G>::value) ||
                         (is_scalar_v<B> && !mentions<B, P, S, G> && scalar_linear<A, P, S, G>::value)> {};

/// Every symbol of `E` is one of `Allowed` (a list).
template <class E, class Allowed>
struct symbols_within;
template <class E, class... A>
struct symbols_within<E, list<A...>> {
    template <class L>
    struct all;
    template <class... Ss>
    struct all<list<Ss...>> : std::bool_constant<((mnemo::detail::contains_type_v<list<A...>, Ss>) && ...)> {};
    using syms = typename mnemo::detail::symbols_of<typename mnemo::detail::topo_order<void, E>::type>::type;
    static constexpr bool value = all<syms>::value;
};

template <class L, class... X>
struct append;
template <class... A, class... X>
struct append<list<A...>, X...> {
    using type = list<A..., X...>;
};

/// Offsets of buffers carved one after another from one allocation.
struct carve {
    std::size_t size = 0;
    std::size_t operator()(std::size_t n) {
        const std::size_t o = size;
        size += n;
        return o;
    }
};

/// The symbols of the dual form's per-token parts.
template <std::size_t Out, std::size_t In>
struct symbols {
    using pred = symbol<"pred~", shape<Out>>;  // G k
    using value = symbol<"v~", shape<Out>>;    // v
    using u = symbol<"du~", shape<Out>>;       // adjoint of u
    using y = symbol<"y~", shape<Out>>;        // retrieval
    using dk = symbol<"dk~", shape<In>>;
    using dv = symbol<"dv~", shape<Out>>;
    using dq = symbol<"dq~", shape<In>>;
    using da = symbol<"da~", shape<>>;
    using db = symbol<"db~", shape<>>;
    using dc = symbol<"dc~", shape<>>;
    using de = symbol<"de~", shape<>>;
    using df = symbol<"df~", shape<>>;
    using p1 = symbol<"P~", shape<1, 1>>;
    using s1 = symbol<"S~", shape<1, 1>>;
    using g1 = symbol<"g~", shape<1, 1>>;
};

/// The facts of the design note, for `Spec`.
template <class Spec, class Fixed>
struct analysis {
    using sy = step_symbols<Spec>;
    using model = typename Spec::model;
    static constexpr std::size_t in = model::in, out = model::out;
    using ds = symbols<out, in>;

    static constexpr bool one_tensor = sy::n == 1;

    template <bool OneTensor, class = void>
    struct linear_model : std::false_type {};
    template <class Void>
    struct linear_model<true, Void> {
        using k = symbol<"k~", shape<in>>;
        using w = typename sy::template param<0>;
        static constexpr bool value =
            std::is_same_v<decltype(model::apply(k{}, w{})), decltype(w{} * k{})>;
    };

    template <bool Ok, class = void>
    struct linear_rule : std::false_type {};
    template <class Void>
    struct linear_rule<true, Void> {
        using P = typename sy::template param<0>;
        using S = typename sy::template surprise<0>;
        using G = symbol<"g~", typename P::shape>;
        using u = decltype(Spec::rule::apply(P{}, S{}, G{}, step<Spec, true, false>::gates));
        template <class U, bool Ok = memory::detail::rule_result<U>>
        struct linear_update : std::false_type {};  // (not a rule's result: step.hpp says so)
        template <class U>
        struct linear_update<U, true>
            : std::bool_constant<scalar_linear<unwrap_t<decltype(U{}.p_next)>, P, S, G>::value &&
                                 scalar_linear<unwrap_t<decltype(U{}.s_next)>, P, S, G>::value> {};
        static constexpr bool value = linear_update<u>::value;
    };

    using inner_expr = decltype(Spec::inner_loss::apply(typename ds::pred{}, typename ds::value{}));
    using outer_expr = decltype(Spec::outer_loss::apply(typename ds::y{}, typename sy::target{}));
    static constexpr bool losses_plain =
        symbols_within<unwrap_t<inner_expr>, typename append<Fixed, typename ds::pred, typename ds::value>::type>::value &&
        symbols_within<unwrap_t<outer_expr>, typename append<Fixed, typename ds::y, typename sy::target>::type>::value;

    static constexpr bool model_ok = linear_model<one_tensor>::value;
    static constexpr bool value = model_ok && linear_rule<model_ok>::value && losses_plain;
};

}  // namespace dual_detail

/// Whether runs of the linear memory `Spec` (sequential and chunked) take this dual form
/// (see the design note); cheap to ask: only the facts are instantiated, not the memory's
/// steps. `has_dual_form_v` (memory/dual_mlp.hpp) asks for either dual form.
template <class Spec>
inline constexpr bool has_linear_dual_form_v = dual_detail::analysis<Spec, typename Spec::gates::fixed>::value;

/// The per-token parts of a dual form, shared by its kernels (linear memories here, MLP
/// memories in memory/dual_mlp.hpp): the features (projections, gates and the rule's
/// coefficients), the inner loss's gradient and its backward, compiled like every step;
/// their binding; and the scalar recurrences of a block.
template <class Spec, class T, bool FirstOrder, class Metas, class Fixed>
class dual_parts {
protected:
    using sy = step_symbols<Spec>;
    using ds = dual_detail::symbols<Spec::model::out, Spec::model::in>;
    using st = step<Spec, true, FirstOrder>;
    static constexpr std::size_t di = Spec::model::in, dout = Spec::model::out, d = Spec::d;


    // --- The per-token parts, as expressions. -------------------------------------------
    static constexpr auto rule1 =
        Spec::rule::apply(typename ds::p1{}, typename ds::s1{}, typename ds::g1{}, st::gates);
    static constexpr auto ca = sum(grad(sum(rule1.p_next), typename ds::p1{}));
    static constexpr auto cb = sum(grad(sum(rule1.p_next), typename ds::s1{}));
    static constexpr auto cc = sum(grad(sum(rule1.p_next), typename ds::g1{}));
    static constexpr auto ce = sum(grad(sum(rule1.s_next), typename ds::s1{}));
    static constexpr auto cf = sum(grad(sum(rule1.s_next), typename ds::g1{}));

    static constexpr auto inner = Spec::inner_loss::apply(typename ds::pred{}, typename ds::value{});
    static constexpr auto inner_u = grad(inner, typename ds::pred{});
    static constexpr auto inner_phi = sum(hadamard(typename ds::u{}, inner_u));

    static constexpr auto feat_phi =
        sum(hadamard(typename ds::dk{}, st::k)) + sum(hadamard(typename ds::dv{}, st::v)) +
        sum(hadamard(typename ds::dq{}, st::q)) + typename ds::da{} * ca + typename ds::db{} * cb +
        typename ds::dc{} * cc + typename ds::de{} * ce + typename ds::df{} * cf;

    // A meta-parameter whose per-token gradient is `outer(a, x)` (a projection of the token)
    // is summed over a chunk as one product A^T X: the plan computes only the vector `a`.
    // The token gradient's terms through those metas are the products A M (batched_rows);
    // any other term of it is the plan's last output.
    using rows = detail::batched_rows<std::remove_cvref_t<decltype(feat_phi)>, typename sy::token, Metas>;
    template <class... M>
    static auto make_feat_bwd(mnemo::detail::list<M...>) {
        if constexpr (rows::has_token_rest) return compile<T>(rows::template output<M>()..., typename rows::token_rest{});
        else return compile<T>(rows::template output<M>()...);
    }
    static constexpr std::size_t batched_width = rows::width;

    // A projection `W * x` of the token by a meta-parameter is computed for the whole
    // sequence as one product X W^T; other features token by token in the plan.
    template <class E>
    struct projection : std::false_type {};
    template <class W>
    struct projection<node<matmul_op, W, typename sy::token>>
        : std::bool_constant<is_symbol_v<W> && mnemo::detail::contains_type_v<Metas, W>> {
        using matrix = W;
    };
    template <class E>
    static constexpr bool projected = projection<unwrap_t<E>>::value;
    template <class E>
    static constexpr auto feature(E e) {
        if constexpr (projected<E>) return constant<0>{};  // placeholder, not read: one scalar
        else return e;
    }
    static constexpr bool k_proj = projected<decltype(st::k)>, v_proj = projected<decltype(st::v)>,
                          q_proj = projected<decltype(st::q)>;
    template <class E, class Params>
    static void project(const Params& p, const T* x, std::size_t len, std::size_t rows, T* out) {
        using W = typename projection<unwrap_t<E>>::matrix;
        gemm(false, true, len, rows, d, T(1), x, d, p[W{}].data(), d, T(0), out, rows);
    }

    using feat_plan = decltype(compile<T>(feature(st::k), feature(st::v), feature(st::q), ca, cb, cc, ce, cf));
    using inner_plan = decltype(compile<T>(inner_u, inner));
    using inner_bwd_plan = decltype(compile<T>(grad(inner_phi, typename ds::pred{}), grad(inner_phi, typename ds::value{})));
    using feat_bwd_plan = decltype(make_feat_bwd(Metas{}));

    feat_plan m_feat;
    inner_plan m_inner;
    inner_bwd_plan m_inner_bwd;
    feat_bwd_plan m_feat_bwd;

    // --- Binding: every symbol to a pointer. ---------------------------------------------
    struct sources {
        const void* params;
        const void* hyper;
        const T* x = nullptr;
        const T* pred = nullptr;
        const T* value = nullptr;
        const T* u = nullptr;
        const T* y = nullptr;
        const T* dk = nullptr;
        const T* dv = nullptr;
        const T* dq = nullptr;
        const T* dcoef = nullptr;  // da, db, dc, de, df
    };

    template <class Params, class Hyper, class Sym>
    static const T* resolve(const sources& s) {
        if constexpr (std::is_same_v<Sym, typename sy::token>) return s.x;
        else if constexpr (std::is_same_v<Sym, typename ds::pred>) return s.pred;
        else if constexpr (std::is_same_v<Sym, typename ds::value>) return s.value;
        else if constexpr (std::is_same_v<Sym, typename ds::u>) return s.u;
        else if constexpr (std::is_same_v<Sym, typename ds::y>) return s.y;
        else if constexpr (std::is_same_v<Sym, typename ds::dk>) return s.dk;
        else if constexpr (std::is_same_v<Sym, typename ds::dv>) return s.dv;
        else if constexpr (std::is_same_v<Sym, typename ds::dq>) return s.dq;
        else if constexpr (std::is_same_v<Sym, typename ds::da>) return s.dcoef + 0;
        else if constexpr (std::is_same_v<Sym, typename ds::db>) return s.dcoef + 1;
        else if constexpr (std::is_same_v<Sym, typename ds::dc>) return s.dcoef + 2;
        else if constexpr (std::is_same_v<Sym, typename ds::de>) return s.dcoef + 3;
        else if constexpr (std::is_same_v<Sym, typename ds::df>) return s.dcoef + 4;
        else if constexpr (mnemo::detail::contains_type_v<Fixed, Sym>)
            return &(*static_cast<const Hyper*>(s.hyper))[Sym{}];
        else return (*static_cast<const Params*>(s.params))[Sym{}].data();
    }

    template <class Params, class Hyper, class Plan, class... Syms>
    static void call(Plan& plan, const sources& s, mnemo::detail::list<Syms...>) {
        plan.run_unchecked(typename Plan::pointers{resolve<Params, Hyper, Syms>(s)...});
    }
    template <class Params, class Hyper, class Plan>
    static void call(Plan& plan, const sources& s) {
        call<Params, Hyper>(plan, s, typename Plan::graph::symbols{});
    }

    template <std::size_t I, class Plan>
    static T scalar_out(const Plan& p) {
        return *p.template data<I>();
    }

    // Scalar recurrences of one chunk of length bl: alpha, beta, eps (bl), Gamma, Phi (bl x bl).
    static void coefficients(const T* coef, std::size_t bl, std::size_t b, T* al, T* be, T* ep, T* Ga, T* Ph) {
        for (std::size_t t = 0; t < bl; ++t) {
            const T a = coef[5 * t], bb = coef[5 * t + 1], c = coef[5 * t + 2], e = coef[5 * t + 3],
                    f = coef[5 * t + 4];
            T* gr = Ga + t * b;
            T* pr = Ph + t * b;
            std::fill_n(gr, b, T(0));
            std::fill_n(pr, b, T(0));
            if (t > 0) {
                const T* gp = Ga + (t - 1) * b;
                const T* pp = Ph + (t - 1) * b;
                for (std::size_t s = 0; s < t; ++s) {
                    gr[s] = a * gp[s] + bb * pp[s];
                    pr[s] = e * pp[s];
                }
            }
            gr[t] = c;
            pr[t] = f;
            const T ep_prev = t ? ep[t - 1] : T(1), al_prev = t ? al[t - 1] : T(1), be_prev = t ? be[t - 1] : T(0);
            ep[t] = e * ep_prev;
            al[t] = a * al_prev;
            be[t] = a * be_prev + bb * ep_prev;
        }
    }

    /// The per-token features of a sequence: K, V, Q (len rows each; the projections by
    /// the token as one product each) and the rule's coefficients C (5 a token).
    template <class Params, class Hyper>
    void features(sources& src, const Params& p, const T* tok, std::size_t len, T* K, T* V, T* Q, T* C) {
        if constexpr (k_proj)
            project<decltype(st::k)>(p, tok, len, di, K);
        if constexpr (v_proj)
            project<decltype(st::v)>(p, tok, len, dout, V);
        if constexpr (q_proj)
            project<decltype(st::q)>(p, tok, len, di, Q);
        for (std::size_t t = 0; t < len; ++t) {
            src.x = tok + t * d;
            call<Params, Hyper>(m_feat, src);
            if constexpr (!k_proj)
                std::copy_n(m_feat.template data<0>(), di, K + t * di);
            if constexpr (!v_proj)
                std::copy_n(m_feat.template data<1>(), dout, V + t * dout);
            if constexpr (!q_proj)
                std::copy_n(m_feat.template data<2>(), di, Q + t * di);
            C[5 * t + 0] = scalar_out<3>(m_feat);
            C[5 * t + 1] = scalar_out<4>(m_feat);
            C[5 * t + 2] = scalar_out<5>(m_feat);
            C[5 * t + 3] = scalar_out<6>(m_feat);
            C[5 * t + 4] = scalar_out<7>(m_feat);
        }

    }

    /// The features' backward over the tokens [t0, t0 + bl) of a sequence, given the
    /// adjoints of their K, V, Q rows and of their coefficients: the metas' gradients into
    /// `grads` (the batched ones as rows of `Ab`, see `batched_metas`), and with `dx` the
    /// token gradient's other terms.
    template <class Params, class Hyper>
    void features_backward(sources& src, Params& grads, T* Ab, const T* tok, std::size_t t0, std::size_t bl,
                           const T* dK, const T* dV, const T* dQ, const T* dcoef, T* dx) {
        for (std::size_t t = 0; t < bl; ++t) {
            src.x = tok + (t0 + t) * d;
            src.dk = dK + t * di;
            src.dv = dV + t * dout;
            src.dq = dQ + t * di;
            src.dcoef = dcoef + 5 * t;
            call<Params, Hyper>(m_feat_bwd, src);
            rows::template collect<0>(m_feat_bwd, grads, Ab + (t0 + t) * batched_width);
            if constexpr (rows::has_token_rest) {
                if (dx) {
                    const T* r = m_feat_bwd.template data<Metas::size>();
                    T* o = dx + (t0 + t) * d;
                    for (std::size_t i = 0; i < d; ++i)
                        o[i] += r[i];
                }
            }
        }
    }
    /// The batched metas over the whole sequence: grads[M] += A^T X; dX += A M.
    template <class Params>
    static void batched_metas(const Params& p, Params& grads, const T* Ab, const T* tok, std::size_t len, T* dx,
                              T* stack) {
        rows::add(grads, Ab, tok, len, d, stack);
        if (dx)
            rows::add_token(p, Ab, len, d, dx, stack);
    }

    /// The adjoint of `coefficients` over a block of bl tokens: from the adjoints of Gamma,
    /// Phi (b x b) and alpha, beta, eps (consumed: dal, dbe, dep are overwritten) to those
    /// of the per-token (a, b, c, e, f), 5 a token into `dcoef`.
    static void coefficients_backward(const T* coef, std::size_t bl, std::size_t b, const T* al, const T* be,
                                      const T* ep, const T* Ga, const T* Ph, T* dGa, T* dPh, T* dal, T* dbe,
                                      T* dep, T* dcoef) {
        for (std::size_t t = bl; t-- > 0;) {
            const T a = coef[5 * t], bv = coef[5 * t + 1], e = coef[5 * t + 3];
            T da = 0, db = 0, dc = dGa[t * b + t], de = 0, df = dPh[t * b + t];
            if (t > 0) {
                const T* gp = Ga + (t - 1) * b;
                const T* pp = Ph + (t - 1) * b;
                T* dgp = dGa + (t - 1) * b;
                T* dpp = dPh + (t - 1) * b;
                for (std::size_t s = 0; s < t; ++s) {
                    const T g = dGa[t * b + s], ph = dPh[t * b + s];
                    da += g * gp[s];
                    db += g * pp[s];
                    de += ph * pp[s];
                    dgp[s] += a * g;
                    dpp[s] += bv * g + e * ph;
                }
            }
            const T ep_prev = t ? ep[t - 1] : T(1), al_prev = t ? al[t - 1] : T(1), be_prev = t ? be[t - 1] : T(0);
            da += dbe[t] * be_prev + dal[t] * al_prev;
            db += dbe[t] * ep_prev;
            de += dep[t] * ep_prev;
            if (t > 0) {
                dbe[t - 1] += a * dbe[t];
                dep[t - 1] += bv * dbe[t] + e * dep[t];
                dal[t - 1] += a * dal[t];
            }
            T* dco = dcoef + 5 * t;
            dco[0] = da;
            dco[1] = db;
            dco[2] = dc;
            dco[3] = de;
            dco[4] = df;
        }

    }

    static T dot(const T* a, const T* b, std::size_t n) { return mnemo::detail::blas::dot(a, b, n); }
    /// C = alpha op(A) op(B) + beta C. A product of one row (a token of the sequential MLP
    /// dual form) is a matrix-vector product: OpenBLAS's AVX2 kernels have no small-matrix
    /// path and pack the operands for every such call (`mlp64` with them: 14.7 ms as
    /// products, 7.35 ms as matrix-vector products).
    static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                     std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
        if (m == 1 && n > 0 && k > 0) {
            // c = alpha op(B)^T a + beta c: B stored (n, k) when transposed, else (k, n).
            mnemo::detail::blas::gemv_acc(!tb, tb ? int(n) : int(k), tb ? int(k) : int(n), alpha, b, int(ldb), a,
                                          ta ? int(lda) : 1, beta, c);
            return;
        }
        mnemo::detail::blas::gemm_acc(ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c,
                                      int(ldc));
    }

    /// The adjoint through a block's end state M' = a M + b S + T1, S' = e S + T2, in one
    /// pass and in place: [dM; dS] becomes [a dM; b dM + e dS] (the terms of the block's
    /// start through M' and S'), and sums = (dM . M, dM . S, dS . S), given [M; S] (each
    /// two matrices of n). Each sum in independent lanes (detail/lanes.hpp), so the loop is
    /// bound by its loads, not by the add's latency.
    static void start_adjoint(T* __restrict dMS, const T* __restrict MS, std::size_t n, T a, T b, T e, T* sums) {
        constexpr std::size_t W = mnemo::detail::sum_lanes;
        T *dM = dMS, *dS = dMS + n;
        const T *M = MS, *S = MS + n;
        T am[W] = {}, bm[W] = {}, es[W] = {};
        const std::size_t full = n / W * W;
        for (std::size_t k = 0; k < full; k += W)
            for (std::size_t l = 0; l < W; ++l) {
                const T dm = dM[k + l], ds = dS[k + l], s = S[k + l];
                dM[k + l] = a * dm;
                dS[k + l] = b * dm + e * ds;
                am[l] += dm * M[k + l];
                bm[l] += dm * s;
                es[l] += ds * s;
            }
        for (std::size_t k = full; k < n; ++k) {
            const T dm = dM[k], ds = dS[k], s = S[k];
            dM[k] = a * dm;
            dS[k] = b * dm + e * ds;
            am[0] += dm * M[k];
            bm[0] += dm * s;
            es[0] += ds * s;
        }
        sums[0] = mnemo::detail::fold_lanes(am);
        sums[1] = mnemo::detail::fold_lanes(bm);
        sums[2] = mnemo::detail::fold_lanes(es);
    }
    /// dP_t, dV_t: the inner gradient's backward at token t, given the adjoint `du` of u_t.
    template <class Params, class Hyper>
    void inner_backward(sources& src, const T* Pc, const T* Vc, const T* du, std::size_t t, T* dP, T* dV) {
        src.pred = Pc + t * dout;
        src.value = Vc + t * dout;
        src.u = du;
        call<Params, Hyper>(m_inner_bwd, src);
        std::copy_n(m_inner_bwd.template data<0>(), dout, dP + t * dout);
        std::copy_n(m_inner_bwd.template data<1>(), dout, dV + t * dout);
    }
};

/// The kernels of linear memories, instantiated only where the dual form applies.
template <class Spec, class T, bool FirstOrder, class Metas, class Fixed>
class dual_kernels : dual_parts<Spec, T, FirstOrder, Metas, Fixed> {
    using base = dual_parts<Spec, T, FirstOrder, Metas, Fixed>;
    using an = dual_detail::analysis<Spec, Fixed>;
    static_assert(an::value, "mnemo internal: the dual form does not apply to this memory.");
    using typename base::sy;
    using typename base::ds;
    using typename base::st;
    using typename base::rows;
    using typename base::sources;
    using base::di, base::dout, base::d, base::batched_width, base::k_proj, base::v_proj, base::q_proj;
    using base::m_feat, base::m_inner, base::m_inner_bwd, base::m_feat_bwd;
    using base::coefficients, base::coefficients_backward, base::dot, base::gemm,
        base::start_adjoint;
    static constexpr std::size_t msz = di * dout;

    // --- Scratch of one block (reused between calls: no allocation once warm). ------------
    std::vector<T> m_chunk;

public:
    /// What a forward keeps for its backward: the per-token quantities of the sequence and
    /// the state at every block start. Owned by the caller (one per sequence of a layer's
    /// forward, or one reused per thread), reused between calls: no allocation once warm.
    struct tape {
        std::vector<T> seq;                // per-token quantities (see `frame`)
        std::vector<T> starts;             // the state (M, S) at every block start
        std::vector<std::size_t> blocks;   // the blocks' first tokens, and the length
        std::size_t len = 0, chunk = 1, block = 1;
        bool write_g = false;
    };

    /// Forward of one sequence whose first token starts a chunk of `chunk` tokens. The
    /// state holds (M, S, G); see `sequence_memory`. `y_out` receives the retrievals (len,
    /// dout), `surprise` the inner losses. With `record`, `tp` keeps what `backward` needs.
    ///
    /// The run goes in blocks of whole chunks (`block`, a multiple of `chunk`). Within a
    /// block from (M0, S0), token t takes its inner gradient at the memory after token
    /// s - 1, where s is the first token of t's chunk:
    ///     pred_t = alpha_{s-1} M0 k_t + beta_{s-1} S0 k_t + sum_{j<s} Gamma_{s-1,j} (k_j . k_t)
    ///     u_j
    /// (alpha_{-1} = 1, beta_{-1} = 0): a forward substitution over the block (u_j = d l / d
    /// pred at pred_j, for any inner loss), and the rest is the dual form above. With block ==
    /// chunk the sums are empty; chunk 1 is the sequential form. Any block gives the same
    /// result up to rounding. `write_g`: the chunked form, whose state's G is the memory at
    /// the last chunk's start (a block starts there); the sequential form leaves G untouched.
    ///
    /// Products that share an operand are stacked: a block's keys and queries are one
    /// (2 bl, di) matrix [K; Q], so [K; Q] [M0; S0]^T, [K; Q] K^T and their adjoints are one
    /// product each.
    template <class Params, class Hyper>
    void forward(tape& tp, const Params& p, const Hyper& h, const T* tok, std::size_t len, std::size_t chunk,
                 std::size_t b, bool write_g, T* state, T* y_out, T* surprise, bool record) {
        // Block starts: every b tokens, and (write_g) at the last chunk's start.
        const std::size_t last_chunk = ((len - 1) / chunk) * chunk;
        tp.len = len;
        tp.chunk = chunk;
        tp.block = b;
        tp.write_g = write_g;
        tp.blocks.clear();
        for (std::size_t t0 = 0; t0 < len;) {
            tp.blocks.push_back(t0);
            std::size_t t1 = std::min(t0 + b, len);
            if (write_g && t0 < last_chunk && t1 > last_chunk)
                t1 = last_chunk;
            t0 = t1;
        }
        const std::size_t nblocks = tp.blocks.size();
        tp.blocks.push_back(len);
        const frame f(tp, m_chunk, false);
        T *K = f.K, *V = f.V, *Q = f.Q, *P = f.P, *U = f.U, *C = f.C, *AKQ = f.AKQ, *KQK = f.KQK;
        T *W = f.W, *Kf = f.Kf;
        // A block's [K; Q] and coefficients, formed here and read again by the backward.
        T *KQ = nullptr, *al = nullptr, *be = nullptr, *ep = nullptr, *Ga = nullptr, *Ph = nullptr;
        auto block_data = [&](std::size_t c) { f.block_data(c, KQ, al, be, ep, Ga, Ph); };
        // Block c runs from the state at `start(c)` to the one at `start(c + 1)`. With
        // `record`, the start of every block is kept in tp.starts (the first copied there,
        // the others written there by the block before), and the last block ends in
        // `state`; without it, every block runs in place in `state`. M, S contiguous: [M; S]
        // is one (2 dout, di) matrix.
        if (record) {
            tp.starts.resize(nblocks * 2 * msz);
            std::copy_n(state, 2 * msz, tp.starts.data());
        }
        auto start = [&](std::size_t c) { return record && c < nblocks ? tp.starts.data() + c * 2 * msz : state; };
        T* G = state + 2 * msz;
        sources src{&p, &h};

        this->template features<Params, Hyper>(src, p, tok, len, K, V, Q, C);

        for (std::size_t c = 0; c < nblocks; ++c) {
            const std::size_t t0 = tp.blocks[c], bl = tp.blocks[c + 1] - t0;
            const T* M = start(c);
            const T* S = M + msz;
            if (write_g && t0 == last_chunk)
                std::copy_n(M, msz, G);
            const T* Vc = V + t0 * dout;
            T *Pc = P + t0 * dout, *Uc = U + t0 * dout, *Yc = y_out + t0 * dout;
            block_data(c);
            coefficients(C + 5 * t0, bl, b, al, be, ep, Ga, Ph);
            std::copy_n(K + t0 * di, bl * di, KQ);
            std::copy_n(Q + t0 * di, bl * di, KQ + bl * di);
            T* Ak = AKQ + t0 * 4 * dout;  // rows of K [M0; S0]^T
            T* Aq = Ak + bl * 2 * dout;   // rows of Q [M0; S0]^T
            T* KK = KQK + t0 * 2 * b;     // K K^T (bl, bl)
            T* QK = KK + bl * bl;         // Q K^T (bl, bl)
            if (bl <= chunk) {
                // One chunk: every token's inner gradient is taken at M0, so K S0^T is not
                // needed (nor read: the right half of Ak's rows stays as it is), nor is K K^T,
                // which only serves the substitution over earlier chunks of the block.
                gemm(false, true, bl, dout, di, T(1), KQ, di, M, di, T(0), Ak, 2 * dout);
                gemm(false, true, bl, 2 * dout, di, T(1), KQ + bl * di, di, M, di, T(0), Aq, 2 * dout);
                gemm(false, true, bl, bl, di, T(1), KQ + bl * di, di, KQ, di, T(0), QK, bl);
            } else {
                gemm(false, true, 2 * bl, 2 * dout, di, T(1), KQ, di, M, di, T(0), Ak, 2 * dout);
                gemm(false, true, 2 * bl, bl, di, T(1), KQ, di, KQ, di, T(0), KK, bl);
            }
            // Inner gradients: pred_t by substitution (see above).
            for (std::size_t t = 0; t < bl; ++t) {
                T* pt = Pc + t * dout;
                const T* ak = Ak + t * 2 * dout;
                const std::size_t s0 = t / chunk * chunk;
                if (s0 == 0) {
                    std::copy_n(ak, dout, pt);
                } else {
                    const T ap = al[s0 - 1], bp = be[s0 - 1];
                    for (std::size_t i = 0; i < dout; ++i)
                        pt[i] = ap * ak[i] + bp * ak[dout + i];
                    for (std::size_t s = 0; s < s0; ++s) {
                        const T w = Ga[(s0 - 1) * b + s] * KK[t * bl + s];
                        const T* us = Uc + s * dout;
                        for (std::size_t i = 0; i < dout; ++i)
                            pt[i] += w * us[i];
                    }
                }
                src.pred = pt;
                src.value = Vc + t * dout;
                this->template call<Params, Hyper>(m_inner, src);
                std::copy_n(m_inner.template data<0>(), dout, Uc + t * dout);
                surprise[t0 + t] = this->template scalar_out<1>(m_inner);
            }
            // Retrievals: Y = diag(alpha) Q M0^T + diag(beta) Q S0^T + (Gamma o Q K^T) U.
            for (std::size_t t = 0; t < bl; ++t)
                for (std::size_t s = 0; s < bl; ++s)
                    W[t * bl + s] = s <= t ? Ga[t * b + s] * QK[t * bl + s] : T(0);
            gemm(false, false, bl, dout, bl, T(1), W, bl, Uc, dout, T(0), Yc, dout);
            for (std::size_t t = 0; t < bl; ++t) {
                const T at = al[t], bt = be[t];
                const T* a = Aq + t * 2 * dout;
                T* yt = Yc + t * dout;
                for (std::size_t i = 0; i < dout; ++i)
                    yt[i] += at * a[i] + bt * a[dout + i];
            }
            // End state: M' = alpha M + beta S + U^T diag(Gamma_last) K, S' = eps S + U^T
            // diag(Phi_last) K; the scaled sums in one pass, in place (no backward) or into
            // the next block's start, then the two products added to them.
            const std::size_t L = bl - 1;
            for (std::size_t s = 0; s < bl; ++s) {
                const T g = Ga[L * b + s], f = Ph[L * b + s];
                const T* ks = KQ + s * di;
                T* row = Kf + s * 2 * di;
                for (std::size_t j = 0; j < di; ++j) {
                    row[j] = g * ks[j];
                    row[di + j] = f * ks[j];
                }
            }
            // (Scalars in locals: the buffers may alias as far as the compiler knows.)
            const T aL = al[L], bL = be[L], eL = ep[L];
            T* const Mn = start(c + 1);
            T* const Sn = Mn + msz;
            for (std::size_t k = 0; k < msz; ++k) {
                const T m = M[k], s = S[k];
                Mn[k] = aL * m + bL * s;
                Sn[k] = eL * s;
            }
            gemm(true, false, dout, di, bl, T(1), Uc, dout, Kf, 2 * di, T(1), Mn, di);
            gemm(true, false, dout, di, bl, T(1), Uc, dout, Kf + di, 2 * di, T(1), Sn, di);
        }
    }

    /// The backward of the forward recorded in `tp` (same parameters, tokens `tok`): given
    /// the upstream adjoint `dY` of the retrievals (len, dout) and the adjoint of the final
    /// state (`final_adj`, M S G; none: zero), adds this sequence's meta-gradient to
    /// `grads`, writes the adjoint of its initial state into `initial_adj` and, when `dx` is
    /// given, the gradient with respect to its tokens (len, d) into `dx`.
    template <class Params, class Hyper>
    void backward(tape& tp, const Params& p, const Hyper& h, const T* tok, const T* dY, const T* final_adj,
                  Params* grads, T* initial_adj, T* dx) {
        const std::size_t len = tp.len, chunk = tp.chunk, b = tp.block, nblocks = tp.blocks.size() - 1, bb = b * b;
        const bool write_g = tp.write_g;
        const frame f(tp, m_chunk, true);
        T *V = f.V, *P = f.P, *U = f.U, *C = f.C, *AKQ = f.AKQ, *KQK = f.KQK, *W = f.W;
        T *KQ = nullptr, *al = nullptr, *be = nullptr, *ep = nullptr, *Ga = nullptr, *Ph = nullptr;
        auto block_data = [&](std::size_t c) { f.block_data(c, KQ, al, be, ep, Ga, Ph); };
        sources src{&p, &h};
        T *dGa = f.dGa, *dPh = f.dPh, *dW = f.dW, *dQK = f.dQK, *dKK = f.dKK, *E = f.E, *dal = f.dal, *dbe = f.dbe,
          *dep = f.dep, *dKQ = f.dKQ, *dU = f.dU, *dV = f.dV, *dP = f.dP, *X1 = f.X1, *UG = f.UG, *dA = f.dA,
          *du = f.du, *dcoef = f.dcoef, *dM = f.dM, *Ab = f.Ab;  // dM: [dM; dS]
        if (dx)
            std::fill_n(dx, len * d, T(0));
        if (final_adj)
            std::copy_n(final_adj, 2 * msz, dM);
        else
            std::fill_n(dM, 2 * msz, T(0));
        for (std::size_t c = nblocks; c-- > 0;) {
            const std::size_t t0 = tp.blocks[c], bl = tp.blocks[c + 1] - t0, L = bl - 1;
            const bool one_chunk = bl <= chunk;  // then dKK is zero and not formed
            const T* M0 = tp.starts.data() + c * 2 * msz;  // [M0; S0]
            const T *Vc = V + t0 * dout, *Pc = P + t0 * dout, *Uc = U + t0 * dout, *dYc = dY + t0 * dout;
            const T* Ak = AKQ + t0 * 4 * dout;
            const T* Aq = Ak + bl * 2 * dout;
            const T* KK = KQK + t0 * 2 * b;
            const T* QK = KK + bl * bl;
            T* dK = dKQ;  // [dK; dQ]: (2 bl, di)
            T* dQ = dKQ + bl * di;
            T* dAk = dA;  // [dAk; dAq]: the adjoints of [K; Q] [M0; S0]^T, (2 bl, 2 dout)
            T* dAq = dA + bl * 2 * dout;
            block_data(c);
            for (std::size_t t = 0; t < bl; ++t)
                for (std::size_t s = 0; s < bl; ++s)
                    W[t * bl + s] = s <= t ? Ga[t * b + s] * QK[t * bl + s] : T(0);
            std::fill_n(dGa, 2 * bb, T(0));  // dGa, dPh
            std::fill_n(dal, 3 * b, T(0));   // dal, dbe, dep

            // The block's end state: dM, dS are its adjoints (until they become the start's).
            // M' term U^T diag(Gamma_L) K and S' term U^T diag(Phi_L) K.
            // X1 = K [dM; dS]^T (bl, 2 dout): rows (dM k_s)^T and (dS k_s)^T.
            gemm(false, true, bl, 2 * dout, di, T(1), KQ, di, dM, di, T(0), X1, 2 * dout);
            for (std::size_t s = 0; s < bl; ++s) {
                const T* x1 = X1 + s * 2 * dout;
                const T* us = Uc + s * dout;
                const T g = Ga[L * b + s], f = Ph[L * b + s];
                T* dus = dU + s * dout;
                T* ug = UG + s * 2 * dout;
                for (std::size_t i = 0; i < dout; ++i) {
                    dus[i] = g * x1[i] + f * x1[dout + i];
                    ug[i] = g * us[i];
                    ug[dout + i] = f * us[i];
                }
                dGa[L * b + s] += dot(us, x1, dout);
                dPh[L * b + s] += dot(us, x1 + dout, dout);
            }
            // dK_s = [Gamma_Ls u_s, Phi_Ls u_s] [dM; dS].
            gemm(false, false, bl, di, 2 * dout, T(1), UG, 2 * dout, dM, di, T(0), dK, di);
            // From here on [dM; dS] holds the adjoint of the block's start: first the terms
            // through a M0 + b S0 and e S0, in place.
            {
                T sums[3];
                start_adjoint(dM, M0, msz, al[L], be[L], ep[L], sums);
                dal[L] += sums[0];
                dbe[L] += sums[1];
                dep[L] += sums[2];
            }
            if (c + 1 == nblocks && final_adj && write_g) {
                // G of the state after the last chunk is this chunk's start memory.
                for (std::size_t k = 0; k < msz; ++k)
                    dM[k] += final_adj[2 * msz + k];
            }

            // Retrievals.
            for (std::size_t t = 0; t < bl; ++t) {
                const T* a = Aq + t * 2 * dout;
                const T* dy = dYc + t * dout;
                T* da = dAq + t * 2 * dout;
                dal[t] += dot(dy, a, dout);
                dbe[t] += dot(dy, a + dout, dout);
                const T at = al[t], bt = be[t];
                for (std::size_t i = 0; i < dout; ++i) {
                    da[i] = at * dy[i];
                    da[dout + i] = bt * dy[i];
                }
            }
            gemm(false, true, bl, bl, dout, T(1), dYc, dout, Uc, dout, T(0), dW, bl);
            gemm(true, false, bl, dout, bl, T(1), W, bl, dYc, dout, T(1), dU, dout);
            for (std::size_t t = 0; t < bl; ++t)
                for (std::size_t s = 0; s < bl; ++s) {
                    const bool low = s <= t;
                    dGa[t * b + s] += low ? dW[t * bl + s] * QK[t * bl + s] : T(0);
                    dQK[t * bl + s] = low ? dW[t * bl + s] * Ga[t * b + s] : T(0);
                }

            // Through u = u(pred, v): dP, dV, and the adjoints of pred's parts.
            if (!one_chunk)
                std::fill_n(dKK, bl * bl, T(0));
            if constexpr (!FirstOrder) {
                // The substitution in reverse: du_t = dU_t + sum over later chunks' tokens r
                // of L_rt dP_r, with L_rt = Gamma_{s(r)-1,t} (k_t . k_r).
                for (std::size_t t = bl; t-- > 0;) {
                    const std::size_t next = (t / chunk + 1) * chunk;
                    if (next >= bl) {
                        this->template inner_backward<Params, Hyper>(src, Pc, Vc, dU + t * dout, t, dP, dV);
                        continue;
                    }
                    std::copy_n(dU + t * dout, dout, du);
                    for (std::size_t r = next; r < bl; ++r) {
                        const std::size_t s0 = r / chunk * chunk;
                        const T w = Ga[(s0 - 1) * b + t] * KK[r * bl + t];
                        const T* dp = dP + r * dout;
                        for (std::size_t i = 0; i < dout; ++i)
                            du[i] += w * dp[i];
                    }
                    this->template inner_backward<Params, Hyper>(src, Pc, Vc, du, t, dP, dV);
                }
                if (!one_chunk) {
                    // D = dP U^T (in dW, free now): dGamma_{s-1,j} += (k_j . k_t) D_tj and
                    // d(k_j . k_t) = Gamma_{s-1,j} D_tj, for j < s = s(t).
                    T* D = dW;
                    gemm(false, true, bl, bl, dout, T(1), dP, dout, Uc, dout, T(0), D, bl);
                    for (std::size_t t = chunk; t < bl; ++t) {
                        const std::size_t s0 = t / chunk * chunk;
                        for (std::size_t j = 0; j < s0; ++j) {
                            dGa[(s0 - 1) * b + j] += KK[t * bl + j] * D[t * bl + j];
                            dKK[t * bl + j] = Ga[(s0 - 1) * b + j] * D[t * bl + j];
                        }
                    }
                }
                // The terms alpha_{s-1} M0 k_t + beta_{s-1} S0 k_t.
                for (std::size_t t = 0; t < bl; ++t) {
                    const T* dp = dP + t * dout;
                    T* da = dAk + t * 2 * dout;
                    const std::size_t s0 = t / chunk * chunk;
                    if (s0 == 0) {
                        std::copy_n(dp, dout, da);
                        std::fill_n(da + dout, dout, T(0));
                        continue;
                    }
                    const T* a = Ak + t * 2 * dout;
                    dal[s0 - 1] += dot(dp, a, dout);
                    dbe[s0 - 1] += dot(dp, a + dout, dout);
                    const T ap = al[s0 - 1], bp = be[s0 - 1];
                    for (std::size_t i = 0; i < dout; ++i) {
                        da[i] = ap * dp[i];
                        da[dout + i] = bp * dp[i];
                    }
                }
            } else {
                // The inner gradient is a constant: nothing flows through u or k.
                std::fill_n(dAk, bl * 2 * dout, T(0));
                std::fill_n(dV, bl * dout, T(0));
            }
            // dK += (dKK + dKK^T) K + dQK^T Q = E [K; Q];  dQ = dQK K. In a block of one
            // chunk dKK is zero: dK += dQK^T Q.
            if (one_chunk) {
                gemm(true, false, bl, di, bl, T(1), dQK, bl, KQ + bl * di, di, T(1), dK, di);
            } else {
                for (std::size_t s = 0; s < bl; ++s)
                    for (std::size_t j = 0; j < bl; ++j) {
                        E[s * 2 * bl + j] = dKK[s * bl + j] + dKK[j * bl + s];
                        E[s * 2 * bl + bl + j] = dQK[j * bl + s];
                    }
                gemm(false, false, bl, di, 2 * bl, T(1), E, 2 * bl, KQ, di, T(1), dK, di);
            }
            gemm(false, false, bl, di, bl, T(1), dQK, bl, KQ, di, T(0), dQ, di);
            // [dK; dQ] += [dAk; dAq] [M0; S0],  [dM; dS] += [dAk; dAq]^T [K; Q].
            if (one_chunk) {
                // One chunk: the right half of dAk (the adjoint of K S0^T) is zero; its
                // products are skipped. dK += dAk_M M0, dQ += dAq [M0; S0],
                // dM += [dAk_M; dAq_M]^T [K; Q], dS += dAq_S^T Q.
                gemm(false, false, bl, di, dout, T(1), dAk, 2 * dout, M0, di, T(1), dK, di);
                gemm(false, false, bl, di, 2 * dout, T(1), dAq, 2 * dout, M0, di, T(1), dQ, di);
                gemm(true, false, dout, di, 2 * bl, T(1), dA, 2 * dout, KQ, di, T(1), dM, di);
                gemm(true, false, dout, di, bl, T(1), dAq + dout, 2 * dout, KQ + bl * di, di, T(1), dM + msz, di);
            } else {
                gemm(false, false, 2 * bl, di, 2 * dout, T(1), dA, 2 * dout, M0, di, T(1), dKQ, di);
                gemm(true, false, 2 * dout, di, 2 * bl, T(1), dA, 2 * dout, KQ, di, T(1), dM, di);
            }
            if constexpr (FirstOrder)
                std::fill_n(dK, bl * di, T(0));

            // The coefficient recurrences, in reverse.
            coefficients_backward(C + 5 * t0, bl, b, al, be, ep, Ga, Ph, dGa, dPh, dal, dbe, dep, dcoef);

            // Per-token features: projections, gates, coefficients.
            this->template features_backward<Params, Hyper>(src, *grads, Ab, tok, t0, bl, dK, dV, dQ, dcoef, dx);
        }
        this->batched_metas(p, *grads, Ab, tok, len, dx, f.stack);
        std::copy_n(dM, 2 * msz, initial_adj);
        // G: overwritten at the first chunk's start; not read by the sequential form (whose
        // step, like the plain one, gives it no adjoint).
        std::fill_n(initial_adj + 2 * msz, msz, T(0));
    }

private:
    using carve = dual_detail::carve;
    /// The buffers of a run: the tape's per-token quantities (sized by the forward) and the
    /// block scratch (the forward's part, or with `backward` all of it), as pointers.
    struct frame {
        T *K, *V, *Q, *P, *U, *C;
        T *AKQ;  // per block: [K; Q] [M0; S0]^T, (2 bl, 2 dout)
        T *KQK;  // per block: [K; Q] K^T, (2 bl, bl)
        T *KQs;  // per block: [K; Q], (2 bl, di)
        T *Co;   // per block: alpha, beta, eps (b), Gamma, Phi (b x b)
        T *W, *Kf;
        T *dGa = nullptr, *dPh = nullptr, *dW = nullptr, *dQK = nullptr, *dKK = nullptr, *E = nullptr,
          *dal = nullptr, *dbe = nullptr, *dep = nullptr, *dKQ = nullptr, *dU = nullptr, *dV = nullptr,
          *dP = nullptr, *X1 = nullptr, *UG = nullptr, *dA = nullptr, *du = nullptr, *dcoef = nullptr,
          *dM = nullptr, *Ab = nullptr, *stack = nullptr;
        std::size_t b, coef_size;
        const std::size_t* blocks;

        frame(tape& tp, std::vector<T>& scratch, bool backward) : b(tp.block), blocks(tp.blocks.data()) {
            const std::size_t len = tp.len, nblocks = tp.blocks.size() - 1, bb = b * b;
            coef_size = 3 * b + 2 * bb;
            // The per-token K and Q serve the forward alone (the backward reads every block's
            // [K; Q]): they live in the worker's scratch, not in the tape of every sequence.
            carve sq;
            const std::size_t oV = sq(len * dout), oP = sq(len * dout), oU = sq(len * dout), oC = sq(5 * len),
                              oAKQ = sq(4 * len * dout), oKQK = sq(2 * len * b), oKQ = sq(2 * len * di),
                              oCo = sq(nblocks * coef_size);
            if (!backward)
                tp.seq.resize(sq.size);
            T* const sb = tp.seq.data();
            V = sb + oV, P = sb + oP, U = sb + oU, C = sb + oC, AKQ = sb + oAKQ, KQK = sb + oKQK, KQs = sb + oKQ,
            Co = sb + oCo;
            const std::size_t wmax = std::max(di, dout);
            carve cs;
            const std::size_t cW = cs(bb), cKf = cs(2 * b * di);
            const std::size_t cK = backward ? 0 : cs(len * di), cQ = backward ? 0 : cs(len * di);
            const std::size_t forward_size = cs.size;
            const std::size_t cdGa = cs(bb), cdPh = cs(bb), cdW = cs(bb), cdQK = cs(bb), cdKK = cs(bb),
                              cE = cs(2 * bb), cdal = cs(b), cdbe = cs(b), cdep = cs(b), cdKQ = cs(2 * b * di),
                              cdU = cs(b * dout), cdV = cs(b * dout), cdP = cs(b * dout), cX1 = cs(2 * b * dout),
                              cUG = cs(2 * b * dout), cdA = cs(4 * b * dout), cdu = cs(wmax), cdcoef = cs(5 * b),
                              cdM = cs(2 * msz), cAb = cs(len * batched_width), cst = cs(rows::stack_size(d));
            const std::size_t need = backward ? cs.size : forward_size;
            if (scratch.size() < need)
                scratch.resize(need);
            T* const ch = scratch.data();
            W = ch + cW, Kf = ch + cKf;
            K = backward ? nullptr : ch + cK;
            Q = backward ? nullptr : ch + cQ;
            if (backward) {
                dGa = ch + cdGa, dPh = ch + cdPh, dW = ch + cdW, dQK = ch + cdQK, dKK = ch + cdKK, E = ch + cE,
                dal = ch + cdal, dbe = ch + cdbe, dep = ch + cdep, dKQ = ch + cdKQ, dU = ch + cdU, dV = ch + cdV,
                dP = ch + cdP, X1 = ch + cX1, UG = ch + cUG, dA = ch + cdA, du = ch + cdu, dcoef = ch + cdcoef,
                dM = ch + cdM, Ab = ch + cAb, stack = ch + cst;
            }
        }
        /// Block c's [K; Q] and coefficients.
        void block_data(std::size_t c, T*& KQ, T*& al, T*& be, T*& ep, T*& Ga, T*& Ph) const {
            KQ = KQs + 2 * blocks[c] * di;
            al = Co + c * coef_size;
            be = al + b;
            ep = be + b;
            Ga = ep + b;
            Ph = Ga + b * b;
        }
    };
};

/// The dual form's kernels where it applies; nothing otherwise.
template <bool Applies, class Kernels>
struct dual_holder_of {};
template <class Kernels>
struct dual_holder_of<true, Kernels> {
    Kernels kernels;
};

}  // namespace mnemo::memory
