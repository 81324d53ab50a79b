#pragma once
/// \file
/// Inner losses (how badly the memory maps a key to its value) and outer losses (how
/// good a retrieval is). A loss is a type with `static constexpr auto apply(P pred, V v)`
/// returning a scalar expression; any such type can be used.

#include "mnemo/expr.hpp"

namespace mnemo::memory {

/// `sum_i (pred_i - v_i)^2`: the Titans associative-memory loss.
struct l2_loss {
    template <class P, class V>
    static constexpr auto apply(P p, V v) { return sum(square(p - v)); }
};

/// `sum_i huber(pred_i - v_i, Num / Den)`.
template <std::int64_t Num = 1, std::int64_t Den = 1>
struct huber_loss {
    template <class P, class V>
    static constexpr auto apply(P p, V v) { return sum(huber(p - v, c<Num, Den>)); }
};

/// `sum_i |pred_i - v_i|^P` (P >= 1; at P = 1 not differentiable where pred_i = v_i).
template <int P>
struct lp_loss {
    static_assert(P >= 1, "mnemo: lp_loss<P> needs P >= 1.");
    template <class Pr, class V>
    static constexpr auto apply(Pr p, V v) {
        if constexpr (P % 2 == 0) return sum(ipow<P>(p - v));
        else return sum(ipow<P>(abs(p - v)));
    }
};

/// `-pred . v`: the negative dot product (linear attention's objective).
struct dot_loss {
    template <class P, class V>
    static constexpr auto apply(P p, V v) { return -dot(p, v); }
};

/// Outer loss: `mean_i (y_i - target_i)^2`.
struct mse {
    template <class Y, class Tg>
    static constexpr auto apply(Y y, Tg t) { return mean(square(y - t)); }
};

/// Outer loss: `mean_i |y_i - target_i|`.
struct l1 {
    template <class Y, class Tg>
    static constexpr auto apply(Y y, Tg t) { return mean(abs(y - t)); }
};

}  // namespace mnemo::memory
