#pragma once
/// \file
/// The dual form of the chunked update for two-layer MLP memories `W2 act(W1 k)`: a chunk's
/// inner gradients, its momentum/forget recurrence and its retrievals as matrix products
/// per layer, without materialising the per-token memories; and the exact backward
/// through it (the form TTT-MLP writes by hand, derived here once for any activation,
/// inner loss, outer loss, gates and rule linear in the gradient).
///
/// Design note. It applies when (read off the user's types and expressions at compile
/// time, `has_mlp_dual_form_v<Spec>`):
///   1. the model is `mlp<Act, false, In, H>` (two layers, no bias): `Model::apply(k, W1,
///      W2)` is the expression `W2 * act(W1 * k)`, `act` elementwise;
///   2. the rule and the losses are as for the linear dual form (memory/dual.hpp).
/// In a chunk of b tokens from (W1, W2, S1, S2), every inner gradient is taken at the
/// chunk's start (the chunked form): with A = K W1^T, Z = act(A), P = Z W2^T (the
/// predictions), U = d l / d P (per token, any inner loss) and D = (U W2) o act'(A),
/// token s's gradients are the outer products d_s k_s^T (W1) and u_s z_s^T (W2). With the
/// scalar coefficients of the linear dual form (alpha, beta, Gamma from the per-token
/// rule), the memory after token t is W_t = alpha_t W + beta_t S + sum_{s<=t} Gamma_ts g_s
/// per layer, so the retrievals y_t = W2_t act(W1_t q_t) are
///     H = diag(alpha) Q W1^T + diag(beta) Q S1^T + (Gamma o Q K^T) D,    R = act(H),
///     Y = diag(alpha) R W2^T + diag(beta) R S2^T + (Gamma o R Z^T) U,
/// and the chunk's end state is four rank-b products. Everything is BLAS-3 but the
/// activation, its derivatives and the per-token plans. The backward is the adjoint of
/// these identities (written here; `act'` and `act''` are the activation's symbolic
/// derivatives), composed with the compiled per-token parts shared with the linear dual
/// form (`dual_parts`).
///
/// Blocks of several chunks, and so the sequential form (chunk 1). In a block of b tokens
/// the chunk from token s takes its gradients at the memory after token p = s - 1,
/// W_p = al_p W + be_p S + sum_{j<s} Ga_pj g_j per layer, so by forward substitution over
/// the block's earlier chunks
///     A = al_p K W1^T + be_p K S1^T + (Ga_p o K K^T) D,
///     P = al_p Z W2^T + be_p Z S2^T + (Ga_p o Z Z^T) U,
///     U W2_p = [al_p U | be_p U] [W2; S2] + (Ga_p o U U^T) Z,
/// over the block's earlier tokens j (al_{-1} = 1, be_{-1} = 0, empty sums in the first
/// chunk): a chunk's products with the block's start state and O(b h) sums, in place of
/// passes over the h x d weights per token. The retrievals and the end state are as above;
/// the backward runs the chunks in reverse (a chunk's D, U, Z have their whole adjoints
/// once the later chunks are done). Chunked runs take blocks of one chunk by default,
/// sequential runs blocks of 16 tokens (`run_options::dual_block`).

#include <algorithm>
#include <cstddef>
#include <vector>

#include "mnemo/memory/dual.hpp"
#include "mnemo/memory/models.hpp"

namespace mnemo::memory {
namespace dual_detail {

/// A two-layer MLP model without bias: its activation and hidden size.
template <class Model>
struct mlp2 : std::false_type {};
template <class Act, std::size_t In, std::size_t H>
struct mlp2<mlp<Act, false, In, H>> : std::true_type {
    using act = Act;
    static constexpr std::size_t hidden = H;
};

template <class Spec, class Fixed>
struct mlp_analysis {
    using base = analysis<Spec, Fixed>;
    using sy = step_symbols<Spec>;
    using model = typename Spec::model;

    template <bool IsMlp, class = void>
    struct model_check : std::false_type {};
    template <class Void>
    struct model_check<true, Void> {
        using k = symbol<"k~", shape<model::in>>;
        using w1 = typename sy::template param<0>;
        using w2 = typename sy::template param<1>;
        using act = typename mlp2<model>::act;
        static constexpr bool value = std::is_same_v<decltype(model::apply(k{}, w1{}, w2{})),
                                                     decltype(w2{} * act::apply(w1{} * k{}))>;
    };
    static constexpr bool model_ok = model_check<mlp2<model>::value && sy::n == 2>::value;
    static constexpr bool value =
        model_ok && base::template linear_rule<model_ok>::value && base::losses_plain;
};

}  // namespace dual_detail

/// Whether runs of the MLP memory `Spec` take the dual form (see the design note).
template <class Spec>
inline constexpr bool has_mlp_dual_form_v = dual_detail::mlp_analysis<Spec, typename Spec::gates::fixed>::value;

/// Whether runs of the memory `Spec` take a dual form: the linear one (memory/dual.hpp) or
/// the MLP one, sequential and chunked runs. Cheap to ask.
template <class Spec>
inline constexpr bool has_dual_form_v = has_linear_dual_form_v<Spec> || has_mlp_dual_form_v<Spec>;

/// The kernels of MLP memories, instantiated only where their dual form applies. The same
/// interface as `dual_kernels` (the driver in memory/sequence.hpp calls either).
template <class Spec, class T, bool FirstOrder, class Metas, class Fixed>
class mlp_dual_kernels : dual_parts<Spec, T, FirstOrder, Metas, Fixed> {
    using base = dual_parts<Spec, T, FirstOrder, Metas, Fixed>;
    using an = dual_detail::mlp_analysis<Spec, Fixed>;
    static_assert(an::value, "mnemo internal: the MLP dual form does not apply to this memory.");
    using typename base::sources;
    using base::di, base::dout, base::d;
    using base::m_inner;
    using base::coefficients, base::coefficients_backward, base::dot, base::gemm, base::start_adjoint;
    using act = typename dual_detail::mlp2<typename Spec::model>::act;
    static constexpr std::size_t h = dual_detail::mlp2<typename Spec::model>::hidden;
    static constexpr std::size_t n1 = h * di, n2 = dout * h;  // W1 (h, di), W2 (dout, h)
    static constexpr std::size_t msz = n1 + n2;                 // [W1, W2]; S likewise after

    // --- The activation and its derivatives, elementwise on a row of h. -------------------
    using a_sym = symbol<"a~", shape<h>>;
    using w_sym = symbol<"w~", shape<h>>;
    static constexpr auto act_d = grad(sum(act::apply(a_sym{})), a_sym{});  // act'(a)
    using act_plan = decltype(compile<T>(act::apply(a_sym{}), act_d));
    using act2_plan = decltype(compile<T>(grad(sum(hadamard(w_sym{}, act_d)), a_sym{})));  // w o act''(a)
    act_plan m_act;
    act2_plan m_act2;

    template <class Plan>
    static void run_rows(Plan& plan, const T* a, const T* w, std::size_t rows, T* out0, T* out1) {
        using syms = typename Plan::graph::symbols;
        for (std::size_t r = 0; r < rows; ++r) {
            typename Plan::pointers ptr{};
            [&]<class... S>(mnemo::detail::list<S...>) {
                std::size_t i = 0;
                ((ptr[i++] = std::is_same_v<S, a_sym> ? a + r * h : w + r * h), ...);
            }(syms{});
            if constexpr (std::tuple_size_v<typename Plan::destinations> == 2)
                plan.run_unchecked_into(ptr, {out0 + r * h, out1 + r * h});
            else
                plan.run_unchecked_into(ptr, {out0 + r * h});
        }
    }

    std::vector<T> m_chunk;

public:
    /// What a forward keeps for its backward (see `dual_kernels::tape`).
    struct tape {
        std::vector<T> seq;
        std::vector<T> starts;
        std::vector<std::size_t> blocks;
        std::size_t len = 0, chunk = 1, block = 1;
        bool write_g = false;
    };

    /// Forward of one sequence whose first token starts a chunk; the interface of
    /// `dual_kernels::forward` (blocks of `b` tokens, whole chunks, split at the last
    /// chunk's start with `write_g`).
    ///
    /// Inside, a state is laid out [W1; S1; W2; S2] (the public layout is [W1, W2, S1, S2]):
    /// each layer's memory and surprise are one stacked matrix, so the products with both
    /// (Q [W1; S1]^T, R [W2; S2]^T, the end state's rank-b updates and their adjoints) are
    /// one call each. The state at every block start is kept in that layout in `tp.starts`
    /// (with `record`; else two slots in turn), converted once per sequence.
    template <class Params, class Hyper>
    void forward(tape& tp, const Params& p, const Hyper& hy, const T* tok, std::size_t len, std::size_t chunk,
                 std::size_t b, bool write_g, T* state, T* y_out, T* surprise, bool record) {
        // Blocks of b tokens (whole chunks), split at the last chunk's start (write_g).
        if (b < chunk) b = chunk;
        if (b > len) b = len;
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
        const std::size_t slots = record ? nblocks + 1 : 2;
        tp.starts.resize(slots * 2 * msz);
        auto slot = [&](std::size_t c) { return tp.starts.data() + (record ? c : c % 2) * 2 * msz; };
        to_inner(state, slot(0));
        sources src{&p, &hy};
        this->template features<Params, Hyper>(src, p, tok, len, f.K, f.V, f.Q, f.C);

        for (std::size_t c = 0; c < nblocks; ++c) {
            const std::size_t t0 = tp.blocks[c], bl = tp.blocks[c + 1] - t0;
            const T* W1 = slot(c);  // [W1; S1]
            const T* W2 = W1 + 2 * n1;  // [W2; S2]
            if (write_g && t0 == last_chunk) {
                // G: the memory at the last chunk's start.
                std::copy_n(W1, n1, state + 2 * msz);
                std::copy_n(W2, n2, state + 2 * msz + n1);
            }
            const blk k = f.block(c, t0);
            coefficients(f.C + 5 * t0, bl, b, k.al, k.be, k.ep, k.Ga, k.Ph);
            const bool multi = bl > chunk;
            if (multi) {
                gemm(false, true, bl, 2 * h, di, T(1), k.K, di, W1, di, T(0), k.AK, 2 * h);  // K [W1; S1]^T
                gemm(false, true, bl, bl, di, T(1), k.K, di, k.K, di, T(0), k.KK, bl);
            }
            // The inner gradients, chunk by chunk: those of the chunk from token s0 at the
            // memory after token s0 - 1 (by substitution over the block's earlier chunks).
            for (std::size_t s0 = 0; s0 < bl; s0 += chunk) {
                const std::size_t cl = std::min(chunk, bl - s0);
                T *Ac = k.A + s0 * h, *Zc = k.Z + s0 * h, *Zpc = k.Zp + s0 * h, *Pc = k.P + s0 * dout,
                  *Uc = k.U + s0 * dout, *UWc = k.UW + s0 * h, *Dc = k.D + s0 * h;
                // A = K W1_p^T: al_p K W1^T + be_p K S1^T + (Ga_p o K K^T) D.
                if (!multi) {
                    gemm(false, true, cl, h, di, T(1), k.K, di, W1, di, T(0), Ac, h);
                } else if (s0 == 0) {
                    for (std::size_t t = 0; t < cl; ++t)
                        std::copy_n(k.AK + t * 2 * h, h, Ac + t * h);
                } else {
                    combine_rows(k.al[s0 - 1], k.be[s0 - 1], k.AK + s0 * 2 * h, cl, h, Ac);
                    weigh(k.Ga + (s0 - 1) * b, k.KK + s0 * bl, bl, cl, s0, f.W);
                    gemm(false, false, cl, h, s0, T(1), f.W, s0, k.D, h, T(1), Ac, h);
                }
                run_rows(m_act, Ac, nullptr, cl, Zc, Zpc);
                // P = W2_p Z: al_p Z W2^T + be_p Z S2^T + (Ga_p o Z Z^T) U.
                if (s0 == 0) {
                    gemm(false, true, cl, dout, h, T(1), Zc, h, W2, h, T(0), Pc, dout);
                } else {
                    T* PZc = k.PZ + s0 * 2 * dout;
                    gemm(false, true, cl, 2 * dout, h, T(1), Zc, h, W2, h, T(0), PZc, 2 * dout);
                    combine_rows(k.al[s0 - 1], k.be[s0 - 1], PZc, cl, dout, Pc);
                    gemm(false, true, cl, s0, h, T(1), Zc, h, k.Z, h, T(0), k.ZZ + s0 * bl, bl);
                    weigh(k.Ga + (s0 - 1) * b, k.ZZ + s0 * bl, bl, cl, s0, f.W);
                    gemm(false, false, cl, dout, s0, T(1), f.W, s0, k.U, dout, T(1), Pc, dout);
                }
                for (std::size_t t = 0; t < cl; ++t) {
                    src.pred = Pc + t * dout;
                    src.value = k.V + (s0 + t) * dout;
                    this->template call<Params, Hyper>(m_inner, src);
                    std::copy_n(m_inner.template data<0>(), dout, Uc + t * dout);
                    surprise[t0 + s0 + t] = this->template scalar_out<1>(m_inner);
                }
                // UW = U W2_p: [al_p U | be_p U] [W2; S2] + (Ga_p o U U^T) Z.
                if (s0 == 0) {
                    gemm(false, false, cl, h, dout, T(1), Uc, dout, W2, h, T(0), UWc, h);
                } else {
                    scaled_side_by_side(k.al[s0 - 1], k.be[s0 - 1], Uc, cl, dout, f.GU);
                    gemm(false, false, cl, h, 2 * dout, T(1), f.GU, 2 * dout, W2, h, T(0), UWc, h);
                    gemm(false, true, cl, s0, dout, T(1), Uc, dout, k.U, dout, T(0), k.UU + s0 * bl, bl);
                    weigh(k.Ga + (s0 - 1) * b, k.UU + s0 * bl, bl, cl, s0, f.W);
                    gemm(false, false, cl, h, s0, T(1), f.W, s0, k.Z, h, T(1), UWc, h);
                }
                for (std::size_t i = 0; i < cl * h; ++i)
                    Dc[i] = UWc[i] * Zpc[i];
            }
            // The first layer's retrievals: H = diag(al) Q W1^T + diag(be) Q S1^T + (Ga o Q K^T) D.
            gemm(false, true, bl, 2 * h, di, T(1), k.Q, di, W1, di, T(0), k.QWS, 2 * h);
            gemm(false, true, bl, bl, di, T(1), k.Q, di, k.K, di, T(0), k.QK, bl);
            masked(k.Ga, k.QK, bl, b, f.W);
            gemm(false, false, bl, h, bl, T(1), f.W, bl, k.D, h, T(0), f.H, h);
            combine(k.al, k.be, k.QWS, bl, h, f.H);
            run_rows(m_act, f.H, nullptr, bl, k.R, k.Rp);
            // The second layer's: Y = diag(al) R W2^T + diag(be) R S2^T + (Ga o R Z^T) U.
            gemm(false, true, bl, 2 * dout, h, T(1), k.R, h, W2, h, T(0), k.RWS, 2 * dout);
            gemm(false, true, bl, bl, h, T(1), k.R, h, k.Z, h, T(0), k.RZ, bl);
            masked(k.Ga, k.RZ, bl, b, f.W);
            T* Yc = y_out + t0 * dout;
            gemm(false, false, bl, dout, bl, T(1), f.W, bl, k.U, dout, T(0), Yc, dout);
            combine(k.al, k.be, k.RWS, bl, dout, Yc);
            // End state, per layer: [W'; S'] = [al W + be S; ep S] + [Dg | Df]^T K (first
            // layer; Dg = diag(Ga_L) D, Df = diag(Ph_L) D), + [Ug | Uf]^T Z (second).
            const std::size_t L = bl - 1;
            T* const nx = slot(c + 1);
            scale_state(W1, n1, k.al[L], k.be[L], k.ep[L], nx);
            scale_state(W2, n2, k.al[L], k.be[L], k.ep[L], nx + 2 * n1);
            side_by_side(k.Ga + L * b, k.Ph + L * b, k.D, bl, h, f.GD);
            gemm(true, false, 2 * h, di, bl, T(1), f.GD, 2 * h, k.K, di, T(1), nx, di);
            side_by_side(k.Ga + L * b, k.Ph + L * b, k.U, bl, dout, f.GU);
            gemm(true, false, 2 * dout, h, bl, T(1), f.GU, 2 * dout, k.Z, h, T(1), nx + 2 * n1, h);
        }
        from_inner(slot(nblocks), state);
    }

    /// The backward of the forward recorded in `tp`; the interface of `dual_kernels::backward`.
    template <class Params, class Hyper>
    void backward(tape& tp, const Params& p, const Hyper& hy, const T* tok, const T* dY, const T* final_adj,
                  Params* grads, T* initial_adj, T* dx) {
        const std::size_t len = tp.len, b = tp.block, nblocks = tp.blocks.size() - 1, bb = b * b;
        const frame f(tp, m_chunk, true);
        sources src{&p, &hy};
        // [dW1; dS1; dW2; dS2]: the adjoint of the current block's end, then of its start.
        T* const dM = f.dM;
        T* const dM2 = dM + 2 * n1;
        if (dx)
            std::fill_n(dx, len * d, T(0));
        if (final_adj)
            to_inner(final_adj, dM);
        else
            std::fill_n(dM, 2 * msz, T(0));
        for (std::size_t c = nblocks; c-- > 0;) {
            const std::size_t t0 = tp.blocks[c], bl = tp.blocks[c + 1] - t0, L = bl - 1;
            const T* W1 = tp.starts.data() + c * 2 * msz;  // [W1; S1]
            const T* W2 = W1 + 2 * n1;                        // [W2; S2]
            const blk k = f.block(c, t0);
            const T* dYc = dY + t0 * dout;
            std::fill_n(f.dGa, 2 * bb, T(0));  // dGa, dPh
            std::fill_n(f.dal, 3 * b, T(0));   // dal, dbe, dep
            T *dGa = f.dGa, *dPh = f.dPh;
            const T* GaL = k.Ga + L * b;
            const T* PhL = k.Ph + L * b;

            // The block's end state (dM holds its adjoint): X = K [dW1; dS1]^T, Yz = Z [dW2;
            // dS2]^T give dD, dU and the last row of dGa, dPh; [Dg | Df] [dW1; dS1] and
            // [Ug | Uf] [dW2; dS2] give dK and dZ.
            gemm(false, true, bl, 2 * h, di, T(1), k.K, di, dM, di, T(0), f.X, 2 * h);
            gemm(false, true, bl, 2 * dout, h, T(1), k.Z, h, dM2, h, T(0), f.Yz, 2 * dout);
            for (std::size_t s = 0; s < bl; ++s) {
                const T g = GaL[s], ph = PhL[s];
                const T *x1 = f.X + s * 2 * h, *x2 = x1 + h, *ds = k.D + s * h;
                T* dd = f.dD + s * h;
                for (std::size_t i = 0; i < h; ++i)
                    dd[i] = g * x1[i] + ph * x2[i];
                const T *y1 = f.Yz + s * 2 * dout, *y2 = y1 + dout, *us = k.U + s * dout;
                T* du = f.dU + s * dout;
                for (std::size_t i = 0; i < dout; ++i)
                    du[i] = g * y1[i] + ph * y2[i];
                dGa[L * b + s] += dot(ds, x1, h) + dot(us, y1, dout);
                dPh[L * b + s] += dot(ds, x2, h) + dot(us, y2, dout);
            }
            side_by_side(GaL, PhL, k.D, bl, h, f.GD);
            gemm(false, false, bl, di, 2 * h, T(1), f.GD, 2 * h, dM, di, T(0), f.dK, di);
            side_by_side(GaL, PhL, k.U, bl, dout, f.GU);
            gemm(false, false, bl, h, 2 * dout, T(1), f.GU, 2 * dout, dM2, h, T(0), f.dZ, h);
            // From here on dM holds the adjoint of the block's start.
            {
                T s1[3], s2[3];
                start_adjoint(dM, W1, n1, k.al[L], k.be[L], k.ep[L], s1);
                start_adjoint(dM2, W2, n2, k.al[L], k.be[L], k.ep[L], s2);
                f.dal[L] += s1[0] + s2[0];
                f.dbe[L] += s1[1] + s2[1];
                f.dep[L] += s1[2] + s2[2];
            }
            if (c + 1 == nblocks && final_adj && tp.write_g) {
                // G after the last chunk is its start memory.
                const T* g = final_adj + 2 * msz;
                for (std::size_t i = 0; i < n1; ++i)
                    dM[i] += g[i];
                for (std::size_t i = 0; i < n2; ++i)
                    dM2[i] += g[n1 + i];
            }

            // The second layer's retrievals: dR = [al dY | be dY] [W2; S2], [dW2; dS2] +=
            // [al dY | be dY]^T R.
            for (std::size_t t = 0; t < bl; ++t) {
                const T* dy = dYc + t * dout;
                f.dal[t] += dot(dy, k.RWS + t * 2 * dout, dout);
                f.dbe[t] += dot(dy, k.RWS + t * 2 * dout + dout, dout);
            }
            side_by_side(k.al, k.be, dYc, bl, dout, f.GU);
            gemm(false, false, bl, h, 2 * dout, T(1), f.GU, 2 * dout, W2, h, T(0), f.dH, h);
            gemm(true, false, 2 * dout, h, bl, T(1), f.GU, 2 * dout, k.R, h, T(1), dM2, h);
            // O = dY U^T: dGa += O o R Z^T; with Om = Ga o O, dR += Om Z, dZ += Om^T R; dU +=
            // (Ga o R Z^T)^T dY.
            gemm(false, true, bl, bl, dout, T(1), dYc, dout, k.U, dout, T(0), f.O, bl);
            masked_adjoint(k.Ga, k.RZ, f.O, bl, b, dGa, f.Om);
            gemm(false, false, bl, h, bl, T(1), f.Om, bl, k.Z, h, T(1), f.dH, h);
            if constexpr (!FirstOrder) {
                gemm(true, false, bl, h, bl, T(1), f.Om, bl, k.R, h, T(1), f.dZ, h);
                masked(k.Ga, k.RZ, bl, b, f.Om);
                gemm(true, false, bl, dout, bl, T(1), f.Om, bl, dYc, dout, T(1), f.dU, dout);
            }
            for (std::size_t i = 0; i < bl * h; ++i)
                f.dH[i] *= k.Rp[i];  // dR -> dH
            // The first layer's retrievals: dQ = [al dH | be dH] [W1; S1], [dW1; dS1] +=
            // [al dH | be dH]^T Q.
            for (std::size_t t = 0; t < bl; ++t) {
                const T* dh = f.dH + t * h;
                f.dal[t] += dot(dh, k.QWS + t * 2 * h, h);
                f.dbe[t] += dot(dh, k.QWS + t * 2 * h + h, h);
            }
            side_by_side(k.al, k.be, f.dH, bl, h, f.GD);
            gemm(false, false, bl, di, 2 * h, T(1), f.GD, 2 * h, W1, di, T(0), f.dQ, di);
            gemm(true, false, 2 * h, di, bl, T(1), f.GD, 2 * h, k.Q, di, T(1), dM, di);
            // O = dH D^T: dGa += O o Q K^T; Om = Ga o O: dQ += Om K, dK += Om^T Q; dD +=
            // (Ga o Q K^T)^T dH.
            gemm(false, true, bl, bl, h, T(1), f.dH, h, k.D, h, T(0), f.O, bl);
            masked_adjoint(k.Ga, k.QK, f.O, bl, b, dGa, f.Om);
            gemm(false, false, bl, di, bl, T(1), f.Om, bl, k.K, di, T(1), f.dQ, di);
            if constexpr (!FirstOrder) {
                gemm(true, false, bl, di, bl, T(1), f.Om, bl, k.Q, di, T(1), f.dK, di);
                masked(k.Ga, k.QK, bl, b, f.Om);
                gemm(true, false, bl, h, bl, T(1), f.Om, bl, f.dH, h, T(1), f.dD, h);

                // Through the inner gradients, chunk by chunk in reverse (the substitution's
                // adjoint: a chunk's D, U, Z have their whole adjoints once the later chunks
                // are done). Per chunk from s0 (p = s0 - 1, its memory al_p W + be_p S + the
                // earlier chunks' gradients): D = UW o act'(A), UW = U W2_p, u = u(P, V),
                // P = Z W2_p^T, Z = act(A), A = K W1_p^T.
                const bool multi = bl > tp.chunk;
                const std::size_t chunk = tp.chunk;
                if (multi)
                    std::fill_n(f.dKK, bl * bl, T(0));
                T* const E1 = f.E;  // [E1; Z]: E1 = dD o act'(A), the adjoint of UW
                T* const UP = f.UP;  // [U; dP]
                T* const dP = UP + bl * dout;
                const std::size_t nch = (bl + chunk - 1) / chunk;
                for (std::size_t j = nch; j-- > 0;) {
                    const std::size_t s0 = j * chunk, cl = std::min(chunk, bl - s0), q = s0 ? s0 - 1 : 0;
                    const T ap = s0 ? k.al[q] : T(1), bp = s0 ? k.be[q] : T(0);
                    const T* gq = k.Ga + q * b;
                    for (std::size_t t = s0; t < s0 + cl; ++t) {
                        f.ap[t] = ap;
                        f.bp[t] = bp;
                    }
                    T *E1c = E1 + s0 * h, *E2c = f.E2 + s0 * h, *dAc = f.dA + s0 * h, *dUc = f.dU + s0 * dout,
                      *dZc = f.dZ + s0 * h, *dPc = dP + s0 * dout;
                    const T *Ac = k.A + s0 * h, *Zc = k.Z + s0 * h, *Zpc = k.Zp + s0 * h, *Uc = k.U + s0 * dout,
                            *UWc = k.UW + s0 * h, *dDc = f.dD + s0 * h;
                    for (std::size_t i = 0; i < cl * h; ++i) {
                        const T dd = dDc[i];
                        E1c[i] = dd * Zpc[i];
                        E2c[i] = dd * UWc[i];  // times act''(A), below
                    }
                    run_rows(m_act2, Ac, E2c, cl, dAc, nullptr);
                    // UW: dU += E1 W2_p^T.
                    if (s0 == 0) {
                        gemm(false, true, cl, dout, h, T(1), E1c, h, W2, h, T(1), dUc, dout);
                    } else {
                        gemm(false, true, cl, 2 * dout, h, T(1), E1c, h, W2, h, T(0), f.X2, 2 * dout);
                        for (std::size_t t = 0; t < cl; ++t) {
                            const T *x1 = f.X2 + t * 2 * dout, *x2 = x1 + dout, *u = Uc + t * dout;
                            f.dal[q] += dot(u, x1, dout);
                            f.dbe[q] += dot(u, x2, dout);
                            T* du = dUc + t * dout;
                            for (std::size_t i = 0; i < dout; ++i)
                                du[i] += ap * x1[i] + bp * x2[i];
                        }
                        // (Ga_p o U U^T) Z: O = E1 Z^T.
                        gemm(false, true, cl, s0, h, T(1), E1c, h, k.Z, h, T(0), f.O, s0);
                        sum_adjoint(gq, k.UU + s0 * bl, bl, f.O, cl, s0, dGa + q * b, f.Om, f.W);
                        gemm(true, false, s0, h, cl, T(1), f.W, s0, E1c, h, T(1), f.dZ, h);
                        gemm(false, false, cl, dout, s0, T(1), f.Om, s0, k.U, dout, T(1), dUc, dout);
                        gemm(true, false, s0, dout, cl, T(1), f.Om, s0, Uc, dout, T(1), f.dU, dout);
                    }
                    // u = u(P, V): dP, dV.
                    for (std::size_t t = s0; t < s0 + cl; ++t) {
                        src.pred = k.P + t * dout;
                        src.value = k.V + t * dout;
                        src.u = f.dU + t * dout;
                        this->template call<Params, Hyper>(this->m_inner_bwd, src);
                        std::copy_n(this->m_inner_bwd.template data<0>(), dout, dP + t * dout);
                        std::copy_n(this->m_inner_bwd.template data<1>(), dout, f.dV + t * dout);
                    }
                    // P: dZ += dP W2_p.
                    if (s0 == 0) {
                        gemm(false, false, cl, h, dout, T(1), dPc, dout, W2, h, T(1), dZc, h);
                    } else {
                        const T* PZc = k.PZ + s0 * 2 * dout;
                        for (std::size_t t = 0; t < cl; ++t) {
                            f.dal[q] += dot(dPc + t * dout, PZc + t * 2 * dout, dout);
                            f.dbe[q] += dot(dPc + t * dout, PZc + t * 2 * dout + dout, dout);
                        }
                        scaled_side_by_side(ap, bp, dPc, cl, dout, f.GU);
                        gemm(false, false, cl, h, 2 * dout, T(1), f.GU, 2 * dout, W2, h, T(1), dZc, h);
                        // (Ga_p o Z Z^T) U: O = dP U^T.
                        gemm(false, true, cl, s0, dout, T(1), dPc, dout, k.U, dout, T(0), f.O, s0);
                        sum_adjoint(gq, k.ZZ + s0 * bl, bl, f.O, cl, s0, dGa + q * b, f.Om, f.W);
                        gemm(true, false, s0, dout, cl, T(1), f.W, s0, dPc, dout, T(1), f.dU, dout);
                        gemm(false, false, cl, h, s0, T(1), f.Om, s0, k.Z, h, T(1), dZc, h);
                        gemm(true, false, s0, h, cl, T(1), f.Om, s0, Zc, h, T(1), f.dZ, h);
                    }
                    for (std::size_t i = 0; i < cl * h; ++i)
                        dAc[i] += dZc[i] * Zpc[i];
                    // A (its products with K W1_p^T after the loop).
                    if (s0 != 0) {
                        const T* AKc = k.AK + s0 * 2 * h;
                        for (std::size_t t = 0; t < cl; ++t) {
                            f.dal[q] += dot(dAc + t * h, AKc + t * 2 * h, h);
                            f.dbe[q] += dot(dAc + t * h, AKc + t * 2 * h + h, h);
                        }
                        // (Ga_p o K K^T) D: O = dA D^T.
                        gemm(false, true, cl, s0, h, T(1), dAc, h, k.D, h, T(0), f.O, s0);
                        sum_adjoint(gq, k.KK + s0 * bl, bl, f.O, cl, s0, dGa + q * b, f.Om, f.W);
                        gemm(true, false, s0, h, cl, T(1), f.W, s0, dAc, h, T(1), f.dD, h);
                        for (std::size_t t = 0; t < cl; ++t)
                            std::copy_n(f.Om + t * s0, s0, f.dKK + (s0 + t) * bl);
                    }
                }
                // The products with the block's start: [dW2; dS2] += [ap U | bp U; ap dP |
                // bp dP]^T [E1; Z]; dK += [ap dA | bp dA] [W1; S1], [dW1; dS1] += [ap dA |
                // bp dA]^T K (in a block of one chunk ap = 1, bp = 0: the S halves skipped).
                std::copy_n(k.U, bl * dout, UP);
                std::copy_n(k.Z, bl * h, E1 + bl * h);
                if (!multi) {
                    gemm(true, false, dout, h, 2 * bl, T(1), UP, dout, E1, h, T(1), dM2, h);
                    gemm(false, false, bl, di, h, T(1), f.dA, h, W1, di, T(1), f.dK, di);
                    gemm(true, false, h, di, bl, T(1), f.dA, h, k.K, di, T(1), dM, di);
                } else {
                    side_by_side(f.ap, f.bp, UP, bl, dout, f.GUP);
                    side_by_side(f.ap, f.bp, dP, bl, dout, f.GUP + bl * 2 * dout);
                    gemm(true, false, 2 * dout, h, 2 * bl, T(1), f.GUP, 2 * dout, E1, h, T(1), dM2, h);
                    side_by_side(f.ap, f.bp, f.dA, bl, h, f.GD);
                    gemm(false, false, bl, di, 2 * h, T(1), f.GD, 2 * h, W1, di, T(1), f.dK, di);
                    gemm(true, false, 2 * h, di, bl, T(1), f.GD, 2 * h, k.K, di, T(1), dM, di);
                    // dK += (dKK + dKK^T) K.
                    for (std::size_t s = 0; s < bl; ++s)
                        for (std::size_t t = 0; t < bl; ++t)
                            f.O[s * bl + t] = f.dKK[s * bl + t] + f.dKK[t * bl + s];
                    gemm(false, false, bl, di, bl, T(1), f.O, bl, k.K, di, T(1), f.dK, di);
                }
            } else {
                // The inner gradient is a constant: nothing flows through u or k.
                std::fill_n(f.dK, bl * di, T(0));
                std::fill_n(f.dV, bl * dout, T(0));
            }

            coefficients_backward(f.C + 5 * t0, bl, b, k.al, k.be, k.ep, k.Ga, k.Ph, dGa, dPh, f.dal, f.dbe, f.dep,
                                  f.dcoef);
            this->template features_backward<Params, Hyper>(src, *grads, f.Ab, tok, t0, bl, f.dK, f.dV, f.dQ,
                                                            f.dcoef, dx);
        }
        this->batched_metas(p, *grads, f.Ab, tok, len, dx, f.stack);
        from_inner(dM, initial_adj);
        std::fill_n(initial_adj + 2 * msz, msz, T(0));  // G: overwritten at the first chunk's start
    }

private:
    /// W = Ga o X on and below the diagonal, zero above (bl x bl; Ga's rows of b).
    static void masked(const T* Ga, const T* X, std::size_t bl, std::size_t b, T* W) {
        for (std::size_t t = 0; t < bl; ++t)
            for (std::size_t s = 0; s < bl; ++s)
                W[t * bl + s] = s <= t ? Ga[t * b + s] * X[t * bl + s] : T(0);
    }
    /// The adjoint of `masked` given the adjoint O of its result: dGa += O o X, Om = Ga o O
    /// (the adjoint of X), both on and below the diagonal.
    static void masked_adjoint(const T* Ga, const T* X, const T* O, std::size_t bl, std::size_t b, T* dGa, T* Om) {
        for (std::size_t t = 0; t < bl; ++t)
            for (std::size_t s = 0; s < bl; ++s) {
                const bool low = s <= t;
                dGa[t * b + s] += low ? O[t * bl + s] * X[t * bl + s] : T(0);
                Om[t * bl + s] = low ? O[t * bl + s] * Ga[t * b + s] : T(0);
            }
    }
    /// The adjoint of a substitution sum (Ga_p o X) Y (rows x cols of X, X's rows of ld)
    /// given O = (its adjoint) Y^T: dg += sum over rows of O o X; Om = g o O (the adjoint
    /// of X); W = g o X (its weights, for the adjoint of Y).
    static void sum_adjoint(const T* g, const T* X, std::size_t ld, const T* O, std::size_t rows, std::size_t cols,
                            T* dg, T* Om, T* W) {
        for (std::size_t t = 0; t < rows; ++t)
            for (std::size_t s = 0; s < cols; ++s) {
                const T o = O[t * cols + s], x = X[t * ld + s];
                dg[s] += o * x;
                Om[t * cols + s] = g[s] * o;
                W[t * cols + s] = g[s] * x;
            }
    }
    /// out = a A1 + b A2 with [A1 | A2] = AS (rows x 2n).
    static void combine_rows(T a, T b, const T* AS, std::size_t rows, std::size_t n, T* out) {
        for (std::size_t t = 0; t < rows; ++t) {
            const T* x = AS + t * 2 * n;
            T* o = out + t * n;
            for (std::size_t i = 0; i < n; ++i)
                o[i] = a * x[i] + b * x[n + i];
        }
    }
    /// W = g o X over rows x cols (g one row of Ga, X's rows of ld), W's rows of cols.
    static void weigh(const T* g, const T* X, std::size_t ld, std::size_t rows, std::size_t cols, T* W) {
        for (std::size_t t = 0; t < rows; ++t)
            for (std::size_t s = 0; s < cols; ++s)
                W[t * cols + s] = g[s] * X[t * ld + s];
    }
    /// [a X | b X], (rows x 2n), from X (rows x n).
    static void scaled_side_by_side(T a, T b, const T* X, std::size_t rows, std::size_t n, T* out) {
        for (std::size_t s = 0; s < rows; ++s) {
            const T* x = X + s * n;
            T* o = out + s * 2 * n;
            for (std::size_t i = 0; i < n; ++i) {
                o[i] = a * x[i];
                o[n + i] = b * x[i];
            }
        }
    }
    /// [diag(g) X | diag(f) X], (bl x 2n), from X (bl x n).
    static void side_by_side(const T* g, const T* f, const T* X, std::size_t bl, std::size_t n, T* out) {
        for (std::size_t s = 0; s < bl; ++s) {
            const T gs = g[s], fs = f[s];
            const T* x = X + s * n;
            T* o = out + s * 2 * n;
            for (std::size_t i = 0; i < n; ++i) {
                o[i] = gs * x[i];
                o[n + i] = fs * x[i];
            }
        }
    }
    /// Y += diag(al) A1 + diag(be) A2 with [A1 | A2] = AS (bl x 2n).
    static void combine(const T* al, const T* be, const T* AS, std::size_t bl, std::size_t n, T* Y) {
        for (std::size_t t = 0; t < bl; ++t) {
            const T at = al[t], bt = be[t];
            const T* a = AS + t * 2 * n;
            T* y = Y + t * n;
            for (std::size_t i = 0; i < n; ++i)
                y[i] += at * a[i] + bt * a[n + i];
        }
    }
    /// One layer's [W'; S'] = [a W + b S; e S] from [W; S] (each of n).
    static void scale_state(const T* __restrict WS, std::size_t n, T a, T b, T e, T* __restrict out) {
        const T *W = WS, *S = WS + n;
        T *Wn = out, *Sn = out + n;
        for (std::size_t i = 0; i < n; ++i) {
            const T w = W[i], s = S[i];
            Wn[i] = a * w + b * s;
            Sn[i] = e * s;
        }
    }
    /// A state (or its adjoint) between the public layout [W1, W2, S1, S2] and the inner
    /// one [W1, S1, W2, S2].
    static void to_inner(const T* pub, T* in) {
        std::copy_n(pub, n1, in);
        std::copy_n(pub + msz, n1, in + n1);
        std::copy_n(pub + n1, n2, in + 2 * n1);
        std::copy_n(pub + msz + n1, n2, in + 2 * n1 + n2);
    }
    static void from_inner(const T* in, T* pub) {
        std::copy_n(in, n1, pub);
        std::copy_n(in + n1, n1, pub + msz);
        std::copy_n(in + 2 * n1, n2, pub + n1);
        std::copy_n(in + 2 * n1 + n2, n2, pub + msz + n1);
    }

    /// A block's coefficients: alpha, beta, eps (b each), Gamma, Phi (b x b each).
    static constexpr std::size_t coef_size(std::size_t b) { return 3 * b + 2 * b * b; }
    /// The per-token quantities of a sequence's tape: offsets in `tape::seq` and its size.
    struct layout {
        std::size_t K, V, Q, C, P, U, A, Z, Zp, UW, D, QWS, R, Rp, RWS, QK, RZ, Co, AK, PZ, KK, ZZ, UU, size;
        layout(std::size_t len, std::size_t nblocks, std::size_t b, bool multi) {
            dual_detail::carve sq;
            K = sq(len * di), V = sq(len * dout), Q = sq(len * di), C = sq(5 * len), P = sq(len * dout),
            U = sq(len * dout), A = sq(len * h), Z = sq(len * h), Zp = sq(len * h), UW = sq(len * h),
            D = sq(len * h), QWS = sq(2 * len * h), R = sq(len * h), Rp = sq(len * h), RWS = sq(2 * len * dout),
            QK = sq(len * b), RZ = sq(len * b), Co = sq(nblocks * coef_size(b));
            // The substitution's, in blocks of several chunks.
            AK = sq(multi ? 2 * len * h : 0), PZ = sq(multi ? 2 * len * dout : 0), KK = sq(multi ? len * b : 0),
            ZZ = sq(multi ? len * b : 0), UU = sq(multi ? len * b : 0);
            size = sq.size;
        }
    };

public:
    /// The bytes the tape of a sequence of `len` tokens takes (its per-token quantities and
    /// the state at every block start), run in blocks of `b` tokens of chunks of `chunk`:
    /// O(h) numbers a token, against O(d) for a linear memory. The driver takes the dual
    /// form only where this fits `run_options::state_budget_bytes`.
    static std::size_t tape_bytes(std::size_t len, std::size_t chunk, std::size_t b) {
        if (len == 0) return 0;
        if (b < chunk) b = chunk;
        if (b > len) b = len;
        const std::size_t nblocks = len / b + 2;  // at most: one more where the last chunk splits a block
        return (layout(len, nblocks, b, b > chunk).size + (nblocks + 1) * 2 * msz) * sizeof(T);
    }

private:
    /// One block's rows of the tape.
    struct blk {
        const T *K, *Q, *V;
        T *P, *U, *A, *Z, *Zp, *UW, *D, *QWS, *R, *Rp, *RWS, *QK, *RZ;
        T *al, *be, *ep, *Ga, *Ph;
        T *AK, *PZ, *KK, *ZZ, *UU;  // the substitution's (blocks of several chunks)
    };
    /// The buffers of a run: the tape's per-token quantities (sized by the forward) and the
    /// block scratch (the forward's part, or with `backward` all of it), as pointers.
    /// QWS = Q [W1; S1]^T and RWS = R [W2; S2]^T, (bl, 2h) and (bl, 2 dout) a block; in
    /// blocks of several chunks also AK = K [W1; S1]^T, PZ = Z [W2; S2]^T and the Gram
    /// matrices K K^T, Z Z^T, U U^T (bl, bl) of the substitution.
    struct frame {
        T *K, *V, *Q, *C, *P, *U, *A, *Z, *Zp, *UW, *D, *QWS, *R, *Rp, *RWS, *QK, *RZ, *Co;
        T *AK, *PZ, *KK, *ZZ, *UU;
        T *W, *H, *GD, *GU;
        T *dGa = nullptr, *dPh = nullptr, *dal = nullptr, *dbe = nullptr, *dep = nullptr, *dcoef = nullptr,
          *X = nullptr, *Yz = nullptr, *dD = nullptr, *dU = nullptr, *dZ = nullptr, *dH = nullptr, *dA = nullptr,
          *dK = nullptr, *dQ = nullptr, *dV = nullptr, *E = nullptr, *E2 = nullptr, *UP = nullptr, *O = nullptr,
          *Om = nullptr, *dM = nullptr, *Ab = nullptr, *stack = nullptr, *ap = nullptr, *bp = nullptr,
          *X2 = nullptr, *GUP = nullptr, *dKK = nullptr;
        std::size_t b, bb;

        frame(tape& tp, std::vector<T>& scratch, bool backward) : b(tp.block), bb(tp.block * tp.block) {
            using carve = dual_detail::carve;
            const std::size_t len = tp.len, nblocks = tp.blocks.size() - 1;
            const layout o(len, nblocks, b, tp.block > tp.chunk);
            if (!backward)
                tp.seq.resize(o.size);
            T* const s = tp.seq.data();
            K = s + o.K, V = s + o.V, Q = s + o.Q, C = s + o.C, P = s + o.P, U = s + o.U, A = s + o.A, Z = s + o.Z,
            Zp = s + o.Zp, UW = s + o.UW, D = s + o.D, QWS = s + o.QWS, R = s + o.R, Rp = s + o.Rp, RWS = s + o.RWS,
            QK = s + o.QK, RZ = s + o.RZ, Co = s + o.Co;
            AK = s + o.AK, PZ = s + o.PZ, KK = s + o.KK, ZZ = s + o.ZZ, UU = s + o.UU;
            carve cs;
            const std::size_t cW = cs(bb), cH = cs(b * h), cGD = cs(2 * b * h), cGU = cs(2 * b * dout);
            const std::size_t forward_size = cs.size;
            const std::size_t cdGa = cs(bb), cdPh = cs(bb), cdal = cs(b), cdbe = cs(b), cdep = cs(b),
                              cdcoef = cs(5 * b), cX = cs(2 * b * h), cYz = cs(2 * b * dout), cdD = cs(b * h),
                              cdU = cs(b * dout), cdZ = cs(b * h), cdH = cs(b * h), cdA = cs(b * h),
                              cdK = cs(b * di), cdQ = cs(b * di), cdV = cs(b * dout), cE = cs(2 * b * h),
                              cE2 = cs(b * h), cUP = cs(2 * b * dout), cO = cs(bb), cOm = cs(bb),
                              cdM = cs(2 * msz), cAb = cs(len * base::batched_width),
                              cst = cs(base::rows::stack_size(d)), cap = cs(b), cbp = cs(b),
                              cX2 = cs(2 * b * dout), cGUP = cs(4 * b * dout), cdKK = cs(bb);
            const std::size_t need = backward ? cs.size : forward_size;
            if (scratch.size() < need)
                scratch.resize(need);
            T* const ch = scratch.data();
            W = ch + cW, H = ch + cH, GD = ch + cGD, GU = ch + cGU;
            if (backward) {
                dGa = ch + cdGa, dPh = ch + cdPh, dal = ch + cdal, dbe = ch + cdbe, dep = ch + cdep,
                dcoef = ch + cdcoef, X = ch + cX, Yz = ch + cYz, dD = ch + cdD, dU = ch + cdU, dZ = ch + cdZ,
                dH = ch + cdH, dA = ch + cdA, dK = ch + cdK, dQ = ch + cdQ, dV = ch + cdV, E = ch + cE,
                E2 = ch + cE2, UP = ch + cUP, O = ch + cO, Om = ch + cOm, dM = ch + cdM, Ab = ch + cAb,
                stack = ch + cst, ap = ch + cap, bp = ch + cbp, X2 = ch + cX2, GUP = ch + cGUP, dKK = ch + cdKK;
            }
        }
        blk block(std::size_t c, std::size_t t0) const {
            T* al = Co + c * coef_size(b);
            return {K + t0 * di,     Q + t0 * di,   V + t0 * dout, P + t0 * dout,        U + t0 * dout,
                    A + t0 * h,      Z + t0 * h,    Zp + t0 * h,   UW + t0 * h,          D + t0 * h,
                    QWS + 2 * t0 * h, R + t0 * h,   Rp + t0 * h,   RWS + 2 * t0 * dout,  QK + t0 * b,
                    RZ + t0 * b,     al,            al + b,        al + 2 * b,           al + 3 * b,
                    al + 3 * b + bb, AK + 2 * t0 * h, PZ + 2 * t0 * dout, KK + t0 * b, ZZ + t0 * b,
                    UU + t0 * b};
        }
    };
};

}  // namespace mnemo::memory
