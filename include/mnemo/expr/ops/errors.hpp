#pragma once
/// \file
/// Shape checks of the user-facing builders.
///
/// Design note: a C++20 `static_assert` message must be a literal, so the shapes cannot be
/// formatted into it. Instead, the failing condition is a variable template whose
/// arguments are a tag naming the operation and the two shapes; both compilers print that
/// condition next to the message
/// ("shapes_match<mnemo::op::in_operator_plus, mnemo::shape<3, 4>, mnemo::shape<4, 3>>"),
/// so an error names the operation and both shapes and nothing else: no operand types.
/// (Tags, not strings: clang 14 prints string template arguments as character codes.)

#include "mnemo/expr/fixed_string.hpp"
#include "mnemo/expr/shape.hpp"

namespace mnemo::op {
/// Tags naming operations in shape errors.
struct in_dot;
struct in_dot_first_operand;
struct in_dot_second_operand;
struct in_fill;
struct in_hadamard;
struct in_l2_normalize;
struct in_matrix_product;
struct in_operator_divide;
struct in_operator_minus;
struct in_operator_plus;
struct in_operator_times_the_left_operand_must_be_the_matrix__write_transpose_A_times_v;
struct in_outer_first_operand;
struct in_outer_second_operand;
struct in_transpose;
}  // namespace mnemo::op

namespace mnemo::check {

/// `Sym` is bound to data in an evaluation.
template <class Sym, bool Bound>
inline constexpr bool symbol_is_bound = Bound;

template <class A, class B>
inline constexpr bool broadcastable = std::is_same_v<A, B> || A::rank == 0 || B::rank == 0;

/// Same shape, or one of them a scalar (elementwise operations).
template <class Op, class A, class B>
inline constexpr bool shapes_match = broadcastable<A, B>;

/// Matrix (m, k) times matrix (k, n) or vector (k).
template <class Op, class A, class B>
inline constexpr bool product_shapes_match =
    A::rank == 2 && B::rank >= 1 && A::dims[A::rank - 1] == B::dims[0];

/// huber(r, delta): delta a scalar or of r's shape.
template <class R, class D>
inline constexpr bool huber_delta_shape = D::rank == 0 || std::is_same_v<R, D>;

template <class Op, class A>
inline constexpr bool is_vector_shape = A::rank == 1;
template <class Op, class A>
inline constexpr bool is_matrix_shape = A::rank == 2;
template <class Op, class A>
inline constexpr bool is_scalar_shape = A::rank == 0;

}  // namespace mnemo::check

namespace mnemo::detail {
template <class A, class B>
using broadcast_shape_t = std::conditional_t<A::rank == 0, B, A>;
}
