#pragma once
/// \file
/// The node types of the expression language.
///
/// An expression is a type: every node is an empty struct whose template arguments
/// describe it completely (operation, children, symbol names, rational constants).
/// Identical subexpressions therefore have identical types, which is what lets the
/// differentiator and the evaluator share work by comparing types.

#include <cstdint>
#include <numeric>
#include <type_traits>

#include "mnemo/detail/typelist.hpp"
#include "mnemo/expr/fixed_string.hpp"
#include "mnemo/expr/shape.hpp"

namespace mnemo {

template <class Sym, class D>
struct binding;

/// A list of types, for the parts of user-defined memories that list shapes or symbols
/// (a model's `params`, a gate type's `fixed`).
template <class... Ts>
using type_list = detail::list<Ts...>;

/// Interior node: operation `Op` applied to the child expressions `Args`.
/// `Op::template result_shape<Args::shape...>` gives its shape.
template <class Op, class... Args>
struct node {
    using op = Op;
    using children = detail::list<Args...>;
    using shape = typename Op::template result_shape<typename Args::shape...>;
};

/// A named variable with a compile-time shape; bound to data at evaluation.
template <fixed_string Name, class Shape>
struct symbol {
    using shape = Shape;
    using children = detail::list<>;
    static constexpr std::string_view name() { return Name.view(); }
    /// `M = data` binds data to the symbol for one evaluation (see eval/bind.hpp).
    template <class D>
    constexpr binding<symbol, D> operator=(const D& data) const {
        return {data};
    }
};

/// The rational constant `Num / Den` (a scalar), kept normalised.
template <std::int64_t Num, std::int64_t Den = 1>
struct constant {
    static_assert(Den > 0 && std::gcd(Num, Den) == (Num == 0 ? Den : 1) && (Num != 0 || Den == 1),
                  "mnemo: constant<Num, Den> must be normalised; use make_constant.");
    using shape = scalar_shape;
    using children = detail::list<>;
    static constexpr std::int64_t num = Num;
    static constexpr std::int64_t den = Den;
    template <class T>
    static constexpr T value() {
        return static_cast<T>(Num) / static_cast<T>(Den);
    }
};

/// A tensor of zeros. The scalar zero is `constant<0>`.
template <class Shape>
struct zero_tensor {
    using shape = Shape;
    using children = detail::list<>;
};

// ---------------------------------------------------------------------------------------
// Traits

template <class T>
struct is_symbol : std::false_type {};
template <fixed_string N, class S>
struct is_symbol<symbol<N, S>> : std::true_type {};
template <class T>
inline constexpr bool is_symbol_v = is_symbol<T>::value;

template <class T>
struct is_constant : std::false_type {};
template <std::int64_t N, std::int64_t D>
struct is_constant<constant<N, D>> : std::true_type {};
template <class T>
inline constexpr bool is_constant_v = is_constant<T>::value;

template <class T>
struct is_node : std::false_type {};
template <class Op, class... A>
struct is_node<node<Op, A...>> : std::true_type {};
template <class T>
inline constexpr bool is_node_v = is_node<T>::value;

template <class T>
struct is_zero : std::false_type {};
template <>
struct is_zero<constant<0>> : std::true_type {};
template <class S>
struct is_zero<zero_tensor<S>> : std::true_type {};
template <class T>
inline constexpr bool is_zero_v = is_zero<T>::value;

template <class T>
inline constexpr bool is_one_v = std::is_same_v<T, constant<1>>;

template <class T, class Op>
struct has_op : std::false_type {};
template <class Op, class... A>
struct has_op<node<Op, A...>, Op> : std::true_type {};
template <class T, class Op>
inline constexpr bool has_op_v = has_op<T, Op>::value;

template <class Shape>
using zero_of = std::conditional_t<Shape::rank == 0, constant<0>, zero_tensor<Shape>>;

template <class T>
struct is_expression_type : std::false_type {};
template <class Op, class... A>
struct is_expression_type<node<Op, A...>> : std::true_type {};
template <fixed_string N, class S>
struct is_expression_type<symbol<N, S>> : std::true_type {};
template <std::int64_t N, std::int64_t D>
struct is_expression_type<constant<N, D>> : std::true_type {};
template <class S>
struct is_expression_type<zero_tensor<S>> : std::true_type {};

/// Any expression of the language.
template <class T>
concept expression = is_expression_type<std::remove_cvref_t<T>>::value;

/// An expression whose shape is a scalar.
template <class T>
concept scalar_expression = expression<T> && std::remove_cvref_t<T>::shape::rank == 0;

template <class E>
using shape_of = typename std::remove_cvref_t<E>::shape;

// ---------------------------------------------------------------------------------------
// Symbols and constants for users

/// A run-time scalar, such as a learning rate: `mnemo::scalar<"eta">`.
template <fixed_string Name>
inline constexpr symbol<Name, shape<>> scalar{};
/// A column vector of size N: `mnemo::vector<"x", 10>`.
template <fixed_string Name, std::size_t N>
inline constexpr symbol<Name, shape<N>> vector{};
/// A matrix of M rows and N columns: `mnemo::matrix<"W", 10, 10>`.
template <fixed_string Name, std::size_t M, std::size_t N>
inline constexpr symbol<Name, shape<M, N>> matrix{};

namespace detail {
constexpr std::int64_t abs64(std::int64_t a) { return a < 0 ? -a : a; }
template <std::int64_t N, std::int64_t D>
struct normalised {
    static_assert(D != 0, "mnemo: a constant's denominator must not be zero.");
    static constexpr std::int64_t g = std::gcd(abs64(N), abs64(D)) == 0 ? 1 : std::gcd(abs64(N), abs64(D));
    static constexpr std::int64_t sign = D < 0 ? -1 : 1;
    using type = constant<(N == 0 ? 0 : sign * N / g), (N == 0 ? 1 : sign * D / g)>;
};
}  // namespace detail

/// The rational constant N / D, normalised: `mnemo::c<1, 2>`.
template <std::int64_t N, std::int64_t D = 1>
inline constexpr typename detail::normalised<N, D>::type c{};

template <std::int64_t N, std::int64_t D = 1>
using make_constant = typename detail::normalised<N, D>::type;

namespace literals {
namespace detail {
template <char... Cs>
constexpr std::int64_t parse_int() {
    std::int64_t v = 0;
    ((v = v * 10 + (Cs - '0')), ...);
    return v;
}
}  // namespace detail
/// Integer constants in expressions: `(1_c - alpha) * M`.
template <char... Cs>
constexpr auto operator""_c() {
    static_assert(((Cs >= '0' && Cs <= '9') && ...), "mnemo: _c takes a decimal integer literal.");
    return constant<detail::parse_int<Cs...>()>{};
}
}  // namespace literals

}  // namespace mnemo
