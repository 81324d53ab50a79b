#pragma once
/// \file
/// Gates: the momentum `eta`, forget gate `alpha` and inner learning rate `theta` of a
/// step, as scalar expressions of the token `x`. A gate type has
/// `static constexpr auto make(X x)` returning `gate_values{eta, alpha, theta}`, and
/// `fixed`: the list of its symbols that are hyperparameters (bound, not learned). Every
/// other symbol it uses is a meta-parameter.

#include "mnemo/expr.hpp"

namespace mnemo::memory {

template <class E, class A, class T>
struct gate_values {
    E eta;
    A alpha;
    T theta;
};
template <class E, class A, class T>
constexpr gate_values<E, A, T> make_gates(E e, A a, T t) {
    return {e, a, t};
}

/// Constant gates: the hyperparameters `eta`, `alpha`, `theta`.
struct const_gates {
    static constexpr auto eta = mnemo::scalar<"eta">;
    static constexpr auto alpha = mnemo::scalar<"alpha">;
    static constexpr auto theta = mnemo::scalar<"theta">;
    using fixed = mnemo::type_list<std::remove_cv_t<decltype(eta)>, std::remove_cv_t<decltype(alpha)>,
                               std::remove_cv_t<decltype(theta)>>;
    template <class X>
    static constexpr auto make(X) { return make_gates(eta, alpha, theta); }
};

/// Gates from the token: `alpha = sigmoid(wa . x + ba)`, `eta = sigmoid(we . x + be)`,
/// `theta = theta_max sigmoid(wt . x + bt)`; `wa, ba, we, be, wt, bt` are learned,
/// `theta_max` is a hyperparameter.
template <std::size_t D>
struct data_gates {
    static constexpr auto wa = mnemo::vector<"wa", D>;
    static constexpr auto ba = mnemo::scalar<"ba">;
    static constexpr auto we = mnemo::vector<"we", D>;
    static constexpr auto be = mnemo::scalar<"be">;
    static constexpr auto wt = mnemo::vector<"wt", D>;
    static constexpr auto bt = mnemo::scalar<"bt">;
    static constexpr auto theta_max = mnemo::scalar<"theta_max">;
    using fixed = mnemo::type_list<std::remove_cv_t<decltype(theta_max)>>;
    template <class X>
    static constexpr auto make(X x) {
        return make_gates(sigmoid(dot(we, x) + be), sigmoid(dot(wa, x) + ba),
                          theta_max * sigmoid(dot(wt, x) + bt));
    }
};

}  // namespace mnemo::memory
