#pragma once
/// \file
/// Declarations of every builder, so that the derivative rules of one operation can use
/// the builders of the others whatever the order of the headers.

#include <cstddef>

#include "mnemo/expr/node.hpp"

namespace mnemo {

/// How the evaluator treats an operation.
enum class op_kind {
    elementwise,  ///< out[i] = f(a[i], b[i], ...), scalars broadcast; fusable into one loop
    reduce_sum,   ///< scalar sum of all entries
    matmul,       ///< matrix times matrix or vector (BLAS)
    outer,        ///< u v^T
    transpose     ///< matrix transpose (folded into BLAS flags where possible)
};

template <class Shape>
struct fill_op;

template <class Op>
struct unary_fn {
    template <expression A>
    constexpr auto operator()(A) const;
};

struct sum_fn {
    template <expression A>
    constexpr auto operator()(A) const;
};
struct transpose_fn {
    template <expression A>
    constexpr auto operator()(A) const;
};
struct outer_fn {
    template <expression A, expression B>
    constexpr auto operator()(A, B) const;
};
struct hadamard_fn {
    template <expression A, expression B>
    constexpr auto operator()(A, B) const;
};
template <class Shape>
struct fill_fn {
    template <expression A>
    constexpr auto operator()(A) const;
};
template <int N>
struct ipow_fn {
    template <expression A>
    constexpr auto operator()(A) const;
};
struct huber_fn {
    template <expression R, expression D>
    constexpr auto operator()(R, D) const;
};

/// `sum(a)`: the sum of all entries of `a`, a scalar.
inline constexpr sum_fn sum{};
/// `transpose(A)`: the transpose of a matrix.
inline constexpr transpose_fn transpose{};
/// `outer(u, v)`: the matrix u v^T of two vectors.
inline constexpr outer_fn outer{};
/// `hadamard(a, b)`: the elementwise product (also `a * b` for vectors and scalars).
inline constexpr hadamard_fn hadamard{};
/// `fill<S>(s)`: the tensor of shape `S` whose entries all equal the scalar `s`.
template <class Shape>
inline constexpr fill_fn<Shape> fill{};
/// `ipow<N>(a)`: the elementwise integer power a^N (N >= 0).
template <int N>
inline constexpr ipow_fn<N> ipow{};
/// `huber(r, delta)`: elementwise Huber function, 0.5 r^2 where |r| <= delta, else
/// delta (|r| - delta / 2); `delta` a scalar or of `r`'s shape.
inline constexpr huber_fn huber{};

}  // namespace mnemo
