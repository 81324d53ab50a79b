#pragma once
/// \file
/// `sum`, `mean`, `squared_norm`, and `fill` (a scalar broadcast to a shape, the adjoint of
/// `sum`).

#include "mnemo/expr/ops/arithmetic.hpp"

namespace mnemo {

struct sum_op {
    static constexpr op_kind kind = op_kind::reduce_sum;
    template <class A>
    using result_shape = shape<>;
    /// d sum(a) = sum(da): the adjoint g is broadcast to a's shape.
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A) { return fill<shape_of<A>>(g); }
};

template <class Shape>
struct fill_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A>
    using result_shape = Shape;
    template <class T>
    static T apply(T a) { return a; }
    /// d fill(s) = fill(ds): the adjoint of s is the sum of G.
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A) { return sum(g); }
};

template <expression A>
constexpr auto sum_fn::operator()([[maybe_unused]] A a) const {
    using SA = shape_of<A>;
    if constexpr (SA::rank == 0) return a;
    else if constexpr (is_zero_v<A>) return constant<0>{};
    else if constexpr (has_op_v<A, fill_op<SA>>)
        return hadamard(make_constant<SA::size>{}, detail::type_at_t<typename A::children, 0>{});
    else return node<sum_op, A>{};
}

template <class Shape>
template <expression A>
constexpr auto fill_fn<Shape>::operator()([[maybe_unused]] A a) const {
    static_assert(check::is_scalar_shape<op::in_fill, shape_of<A>>, "mnemo: fill<S>(s) needs a scalar s.");
    if constexpr (Shape::rank == 0) return a;
    else if constexpr (is_zero_v<A>) return zero_tensor<Shape>{};
    else return node<fill_op<Shape>, A>{};
}

/// `mean(a)`: the mean of all entries, `sum(a) / size`.
struct mean_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const {
        return hadamard(make_constant<1, shape_of<A>::size>{}, sum(a));
    }
};
inline constexpr mean_fn mean{};

/// `squared_norm(a)`: the sum of the squares of all entries.
struct squared_norm_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const { return sum(ipow<2>(a)); }
};
inline constexpr squared_norm_fn squared_norm{};

}  // namespace mnemo
