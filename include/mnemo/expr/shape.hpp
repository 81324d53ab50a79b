#pragma once
/// \file
/// Compile-time shapes: scalar `shape<>`, vector `shape<n>` (a column), matrix
/// `shape<m, n>` (row-major when bound to data).

#include <array>
#include <cstddef>
#include <string>

namespace mnemo {

template <std::size_t... Dims>
struct shape {
    static_assert(sizeof...(Dims) <= 2, "mnemo: a shape has at most two dimensions (scalar, vector, matrix).");
    static_assert(((Dims > 0) && ...), "mnemo: every dimension of a shape must be positive.");
    static constexpr std::size_t rank = sizeof...(Dims);
    static constexpr std::size_t size = (std::size_t{1} * ... * Dims);
    static constexpr std::array<std::size_t, rank> dims{Dims...};
};

using scalar_shape = shape<>;

template <class S>
inline constexpr bool is_scalar_shape_v = S::rank == 0;
template <class S>
inline constexpr bool is_vector_shape_v = S::rank == 1;
template <class S>
inline constexpr bool is_matrix_shape_v = S::rank == 2;

/// Number of rows of a vector or matrix shape (1 for a scalar).
template <class S>
constexpr std::size_t rows_v() {
    if constexpr (S::rank == 0) return 1;
    else return S::dims[0];
}
/// Number of columns of a matrix shape (1 for a vector or scalar).
template <class S>
constexpr std::size_t cols_v() {
    if constexpr (S::rank < 2) return 1;
    else return S::dims[1];
}

/// "(10, 10)", "(10)", "()": for diagnostics.
template <class S>
std::string shape_string() {
    std::string s = "(";
    for (std::size_t i = 0; i < S::rank; ++i) {
        if (i) s += ", ";
        s += std::to_string(S::dims[i]);
    }
    return s + ")";
}

}  // namespace mnemo
