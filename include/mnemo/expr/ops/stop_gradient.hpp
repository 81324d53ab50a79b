#pragma once
/// \file
/// `stop_gradient(e)`: the value of `e`, with a derivative of zero. It makes first-order
/// meta-gradients: the inner gradient used as a constant.

#include "mnemo/expr/ops/arithmetic.hpp"

namespace mnemo {

struct stop_gradient_op {
    static constexpr op_kind kind = op_kind::elementwise;
    static constexpr std::string_view name = "stop_gradient";
    template <class A>
    using result_shape = A;
    template <class T>
    static T apply(T a) { return a; }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, G, A) { return zero_of<shape_of<A>>{}; }
};

/// `stop_gradient(e)`: evaluates to `e`; `grad` treats it as a constant.
template <expression A>
constexpr auto stop_gradient(A a) {
    if constexpr (is_constant_v<A> || is_zero_v<A>) return a;
    else return node<stop_gradient_op, A>{};
}

}  // namespace mnemo
