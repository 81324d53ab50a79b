#pragma once
/// \file
/// Update rules: the memory's parameter and surprise after one inner step, as expressions
/// of the parameter `p`, its surprise `s`, the inner gradient `g` and the gates. A rule is a
/// type with `static constexpr auto apply(P p, S s, G g, Gates gates)` returning
/// `update{p_next, s_next}`; every rule applies to each parameter tensor separately. Its
/// backward is derived, never written: any expression is a rule.

#include "mnemo/expr.hpp"

namespace mnemo::memory {

/// The result of a rule: the next parameter and the next surprise.
template <class PN, class SN>
struct update {
    PN p_next;
    SN s_next;
};
template <class PN, class SN>
constexpr update<PN, SN> make_update(PN p, SN s) {
    return {p, s};
}

/// Titans: `S = eta S - theta g`,  `M = (1 - alpha) M + S`.
struct titans_rule {
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        auto s_next = gt.eta * s - gt.theta * g;
        return make_update((c<1> - gt.alpha) * p + s_next, s_next);
    }
};

/// Plain gradient descent with forgetting (the gated delta rule for a linear memory):
/// `M = (1 - alpha) M - theta g`; the surprise is unused.
struct delta_rule {
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        return make_update((c<1> - gt.alpha) * p - gt.theta * g, s);
    }
};

/// Momentum whose step is rescaled to unit norm (a normalising retention):
/// `S = eta S - theta g`,  `M = (1 - alpha) M + theta S / sqrt(||S||^2 + 1e-12)`.
struct normalized_momentum_rule {
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        auto s_next = gt.eta * s - gt.theta * g;
        auto step = gt.theta * (s_next / sqrt(squared_norm(s_next) + c<1, 1000000000000>));
        return make_update((c<1> - gt.alpha) * p + step, s_next);
    }
};

/// Momentum orthogonalised by `Steps` Newton-Schulz iterations before it is applied (the
/// Muon-style inner optimiser): `X_0 = S / ||S||`, `X = 3/2 X - 1/2 X X^T X`,
/// `M = (1 - alpha) M + theta X_Steps`. Matrix parameters only.
template <int Steps = 3>
struct newton_schulz_rule {
    template <int K, class X>
    static constexpr auto iterate(X x) {
        if constexpr (K == 0) return x;
        else return iterate<K - 1>(c<3, 2> * x - c<1, 2> * (x * (transpose(x) * x)));
    }
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        static_assert(shape_of<P>::rank == 2, "mnemo: newton_schulz_rule orthogonalises matrix parameters only.");
        auto s_next = gt.eta * s - gt.theta * g;
        auto x0 = s_next / sqrt(squared_norm(s_next) + c<1, 1000000000000>);
        return make_update((c<1> - gt.alpha) * p + gt.theta * iterate<Steps>(x0), s_next);
    }
};

}  // namespace mnemo::memory
