#pragma once
/// \file
/// Elementwise functions: exp, log, sqrt, tanh, erf, sigmoid, relu, softplus, abs, sign,
/// integer powers, and the composites silu, gelu and gelu_exact. Each rule gives the
/// derivative as an expression of the same language, so every function can be
/// differentiated again.

#include <cmath>

#include "mnemo/detail/exp.hpp"
#include "mnemo/expr/ops/arithmetic.hpp"

namespace mnemo {

/// Common part of the unary elementwise operations.
struct unary_elementwise {
    static constexpr op_kind kind = op_kind::elementwise;
    static constexpr bool zero_preserving = false;  // f(0) == 0
    template <class A>
    using result_shape = A;
};

struct exp_op : unary_elementwise {
    static constexpr std::string_view name = "exp";
    template <class T>
    static T apply(T a) { return detail::exp_arith(a); }  // vectorises, about 1 ulp
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp([[maybe_unused]] Self self, [[maybe_unused]] G g, A) { return hadamard(g, self); }
};

struct log_op : unary_elementwise {
    static constexpr std::string_view name = "log";
    template <class T>
    static T apply(T a) { return std::log(a); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) { return g / a; }
};

struct sqrt_op : unary_elementwise {
    static constexpr std::string_view name = "sqrt";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return std::sqrt(a); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp([[maybe_unused]] Self self, [[maybe_unused]] G g, A) { return hadamard(c<1, 2>, g / self); }
};

struct tanh_op : unary_elementwise {
    static constexpr std::string_view name = "tanh";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return std::tanh(a); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp([[maybe_unused]] Self self, [[maybe_unused]] G g, A) { return hadamard(g, c<1> - ipow<2>(self)); }
};

/// The error function, erf(a) = 2/sqrt(pi) * integral from 0 to a of exp(-t^2) dt. Its
/// derivative 2/sqrt(pi) * exp(-a^2) is an expression of exp, so erf can be differentiated
/// again. 2/sqrt(pi) enters as the rational 11283791670955126 / 10^16 (exact to double
/// precision: within 3e-17 of 1.1283791670955125738...).
struct erf_op : unary_elementwise {
    static constexpr std::string_view name = "erf";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return std::erf(a); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a);
};

struct sigmoid_op : unary_elementwise {
    static constexpr std::string_view name = "sigmoid";
    template <class T>
    static T apply(T a) {
        // Stable for large |a|: never exp of a large positive number; without a branch, so
        // that loops over it vectorise.
        const T e = detail::exp_arith(-std::abs(a));
        const T s = T(1) / (T(1) + e);
        return a >= T(0) ? s : e * s;
    }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp([[maybe_unused]] Self self, [[maybe_unused]] G g, A) { return hadamard(g, hadamard(self, c<1> - self)); }
};

struct softplus_op : unary_elementwise {
    static constexpr std::string_view name = "softplus";
    template <class T>
    static T apply(T a) { return std::max(a, T(0)) + std::log1p(std::exp(-std::abs(a))); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a);
};

/// 1 where a > 0, else 0: the derivative of relu (its own derivative is zero).
struct step_op : unary_elementwise {
    static constexpr std::string_view name = "step";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return a > T(0) ? T(1) : T(0); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, G, A) { return zero_of<shape_of<A>>{}; }
};

struct relu_op : unary_elementwise {
    static constexpr std::string_view name = "relu";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return a > T(0) ? a : T(0); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) { return hadamard(g, step(a)); }
};

struct sign_op : unary_elementwise {
    static constexpr std::string_view name = "sign";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return a > T(0) ? T(1) : (a < T(0) ? T(-1) : T(0)); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, G, A) { return zero_of<shape_of<A>>{}; }
};

struct abs_op : unary_elementwise {
    static constexpr std::string_view name = "abs";
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) { return std::abs(a); }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) { return hadamard(g, sign(a)); }
};

template <int N>
struct ipow_op : unary_elementwise {
    static constexpr bool zero_preserving = true;
    template <class T>
    static T apply(T a) {
        T r = a;
        for (int i = 1; i < N; ++i) r *= a;
        return r;
    }
    /// d a^N = N a^(N-1) da
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) { return hadamard(g, hadamard(c<N>, ipow<N - 1>(a))); }
};

// Design note: the elementwise functions are function templates constrained on
// `expression`, not function objects: they share their names with <cmath>, and a user
// who writes `using namespace mnemo;` must still be able to call `tanh(x)` on a mnemo
// expression next to `std::tanh(0.5)`. Overload resolution (and argument-dependent
// look-up) picks the right one.

/// `exp(a)`, elementwise.
template <expression A>
constexpr auto exp(A a) { return unary_fn<exp_op>{}(a); }
/// `log(a)`, elementwise natural logarithm.
template <expression A>
constexpr auto log(A a) { return unary_fn<log_op>{}(a); }
/// `sqrt(a)`, elementwise.
template <expression A>
constexpr auto sqrt(A a) { return unary_fn<sqrt_op>{}(a); }
/// `tanh(a)`, elementwise.
template <expression A>
constexpr auto tanh(A a) { return unary_fn<tanh_op>{}(a); }
/// `erf(a)`, elementwise error function.
template <expression A>
constexpr auto erf(A a) { return unary_fn<erf_op>{}(a); }
/// `sigmoid(a) = 1 / (1 + exp(-a))`, elementwise.
template <expression A>
constexpr auto sigmoid(A a) { return unary_fn<sigmoid_op>{}(a); }
/// `softplus(a) = log(1 + exp(a))`, elementwise (evaluated stably).
template <expression A>
constexpr auto softplus(A a) { return unary_fn<softplus_op>{}(a); }
/// `relu(a) = max(a, 0)`, elementwise.
template <expression A>
constexpr auto relu(A a) { return unary_fn<relu_op>{}(a); }
/// `step(a)`: 1 where a > 0, else 0 (the derivative of relu).
template <expression A>
constexpr auto step(A a) { return unary_fn<step_op>{}(a); }
/// `abs(a)`, elementwise.
template <expression A>
constexpr auto abs(A a) { return unary_fn<abs_op>{}(a); }
/// `sign(a)`: -1, 0 or 1, elementwise (the derivative of abs).
template <expression A>
constexpr auto sign(A a) { return unary_fn<sign_op>{}(a); }

template <std::size_t I, class Self, class G, class A>
constexpr auto softplus_op::vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) { return hadamard(g, sigmoid(a)); }

/// d erf(a) = 2/sqrt(pi) exp(-a^2) da
template <std::size_t I, class Self, class G, class A>
constexpr auto erf_op::vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a) {
    constexpr auto two_over_sqrt_pi = c<11283791670955126, 10000000000000000>;
    return hadamard(g, hadamard(two_over_sqrt_pi, exp(-ipow<2>(a))));
}

template <class Op>
template <expression A>
constexpr auto unary_fn<Op>::operator()([[maybe_unused]] A a) const {
    if constexpr (Op::zero_preserving && is_zero_v<A>) return a;
    else return node<Op, A>{};
}

template <int N>
template <expression A>
constexpr auto ipow_fn<N>::operator()([[maybe_unused]] A a) const {
    static_assert(N >= 0, "mnemo: ipow<N> needs N >= 0; write c<1> / ipow<N>(a) for a negative power.");
    if constexpr (N == 0) return detail::broadcast_to<shape_of<A>>(c<1>);
    else if constexpr (N == 1) return a;
    else if constexpr (is_zero_v<A>) return a;
    else if constexpr (is_constant_v<A>) return hadamard(A{}, ipow<N - 1>(a));
    else return node<ipow_op<N>, A>{};
}

/// `square(a)`: a * a elementwise.
inline constexpr ipow_fn<2> square{};

/// `silu(a) = a * sigmoid(a)`.
struct silu_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const { return hadamard(a, sigmoid(a)); }
};
inline constexpr silu_fn silu{};

/// `gelu(a)`, tanh form: `a/2 * (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))`.
/// sqrt(2/pi) enters as the rational 7978845608028654 / 10^16 (exact to double precision).
struct gelu_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const {
        constexpr auto k = c<7978845608028654, 10000000000000000>;
        constexpr auto b = c<44715, 1000000>;
        return hadamard(hadamard(c<1, 2>, a), c<1> + tanh(hadamard(k, a + hadamard(b, ipow<3>(a)))));
    }
};
inline constexpr gelu_fn gelu{};

/// `gelu_exact(a)`, erf form: `a/2 * (1 + erf(a / sqrt(2)))` (PyTorch's `nn.GELU()`
/// default). 1/sqrt(2) enters as the rational 7071067811865475 / 10^16 (exact to double
/// precision).
struct gelu_exact_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const {
        constexpr auto k = c<7071067811865475, 10000000000000000>;
        return hadamard(hadamard(c<1, 2>, a), c<1> + erf(hadamard(k, a)));
    }
};
inline constexpr gelu_exact_fn gelu_exact{};

/// `l2_normalize(v) = v / sqrt(sum(v^2))`. Not defined at v = 0.
struct l2_normalize_fn {
    template <expression A>
    constexpr auto operator()([[maybe_unused]] A a) const {
        static_assert(check::is_vector_shape<op::in_l2_normalize, shape_of<A>>, "mnemo: l2_normalize needs a vector.");
        return a / sqrt(sum(ipow<2>(a)));
    }
};
inline constexpr l2_normalize_fn l2_normalize{};

}  // namespace mnemo
