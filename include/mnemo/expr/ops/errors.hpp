#pragma once
/// \file
/// Shape checks of the user-facing builders.
///
/// Design note: a C++20 `static_assert` message must be a literal, so the shapes cannot be
/// formatted into it. Instead, the failing condition is a variable template whose
/// arguments are the operation's name and the two shapes; both compilers print that
/// condition next to the message ("shapes_match<"operator+", shape<3, 4>, shape<4, 3>>"),
/// so an error names the operation and both shapes and nothing else: no operand types.

#include "mnemo/expr/fixed_string.hpp"
#include "mnemo/expr/shape.hpp"

namespace mnemo::check {

template <class A, class B>
inline constexpr bool broadcastable = std::is_same_v<A, B> || A::rank == 0 || B::rank == 0;

/// Same shape, or one of them a scalar (elementwise operations).
template <fixed_string Op, class A, class B>
inline constexpr bool shapes_match = broadcastable<A, B>;

/// Matrix (m, k) times matrix (k, n) or vector (k).
template <fixed_string Op, class A, class B>
inline constexpr bool product_shapes_match =
    A::rank == 2 && B::rank >= 1 && A::dims[A::rank - 1] == B::dims[0];

/// huber(r, delta): delta a scalar or of r's shape.
template <class R, class D>
inline constexpr bool huber_delta_shape = D::rank == 0 || std::is_same_v<R, D>;

template <fixed_string Op, class A>
inline constexpr bool is_vector_shape = A::rank == 1;
template <fixed_string Op, class A>
inline constexpr bool is_matrix_shape = A::rank == 2;
template <fixed_string Op, class A>
inline constexpr bool is_scalar_shape = A::rank == 0;

}  // namespace mnemo::check

namespace mnemo::detail {
template <class A, class B>
using broadcast_shape_t = std::conditional_t<A::rank == 0, B, A>;
}
