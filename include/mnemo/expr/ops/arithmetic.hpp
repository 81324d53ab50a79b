#pragma once
/// \file
/// `+`, `-`, unary `-`, elementwise `*` (hadamard) and `/`, with scalar broadcasting,
/// constant folding and zero/one folding; `operator*` dispatches to the matrix product
/// for matrix operands.

#include <cstdint>

#include "mnemo/expr/ops/errors.hpp"
#include "mnemo/expr/ops/fwd.hpp"

namespace mnemo {

struct add_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T a, T b) { return a + b; }
    /// d(a + b) = da + db
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A, B) { return g; }
};

struct sub_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T a, T b) { return a - b; }
    /// d(a - b) = da - db
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A, B) {
        if constexpr (I == 0) return g;
        else return -g;
    }
};

struct mul_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T a, T b) { return a * b; }
    /// d(a * b) = da * b + a * db  (elementwise)
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a, [[maybe_unused]] B b) {
        if constexpr (I == 0) return hadamard(g, b);
        else return hadamard(g, a);
    }
};

struct div_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T a, T b) { return a / b; }
    /// d(a / b) = da / b - (a / b) db / b
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp([[maybe_unused]] Self self, [[maybe_unused]] G g, A, [[maybe_unused]] B b) {
        if constexpr (I == 0) return g / b;
        else return -hadamard(g, self / b);
    }
};

struct neg_op {
    static constexpr op_kind kind = op_kind::elementwise;
    template <class A>
    using result_shape = A;
    template <class T>
    static T apply(T a) { return -a; }
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A) { return -g; }
};

namespace detail {

// Exact rational arithmetic on 64-bit integers; an overflow stops compilation (a throw in
// a constant expression is an error).
constexpr std::int64_t mul64(std::int64_t a, std::int64_t b) {
    std::int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) throw "mnemo: constant folding overflowed 64-bit integers";
    return r;
}
constexpr std::int64_t add64(std::int64_t a, std::int64_t b) {
    std::int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) throw "mnemo: constant folding overflowed 64-bit integers";
    return r;
}
template <class A, class B>
using const_add = make_constant<add64(mul64(A::num, B::den), mul64(B::num, A::den)), mul64(A::den, B::den)>;
template <class A, class B>
using const_sub = make_constant<add64(mul64(A::num, B::den), -mul64(B::num, A::den)), mul64(A::den, B::den)>;
template <class A, class B>
using const_mul = make_constant<mul64(A::num, B::num), mul64(A::den, B::den)>;
template <class A, class B>
using const_div = make_constant<mul64(A::num, B::den), mul64(A::den, B::num)>;

/// `e` given the shape `R` of a broadcast result: a scalar becomes `fill<R>(e)`.
template <class R, class E>
constexpr auto broadcast_to(E e) {
    if constexpr (std::is_same_v<typename E::shape, R>) return e;
    else return fill<R>(e);
}

/// The scalar inside `fill<S>(s)`, or the expression itself.
template <class E>
struct strip_fill {
    using type = E;
};
template <class S, class A>
struct strip_fill<node<fill_op<S>, A>> {
    using type = A;
};

}  // namespace detail

template <expression A, expression B>
constexpr auto operator+([[maybe_unused]] A a, [[maybe_unused]] B b) {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::shapes_match<op::in_operator_plus, SA, SB>,
                  "mnemo: operator+ needs operands of the same shape, or one scalar operand.");
    if constexpr (!check::broadcastable<SA, SB>) return zero_of<SA>{};
    else {
        using R = detail::broadcast_shape_t<SA, SB>;
        if constexpr (is_constant_v<A> && is_constant_v<B>) return detail::const_add<A, B>{};
        else if constexpr (is_zero_v<A>) return detail::broadcast_to<R>(b);
        else if constexpr (is_zero_v<B>) return detail::broadcast_to<R>(a);
        else return node<add_op, A, B>{};
    }
}

template <expression A, expression B>
constexpr auto operator-([[maybe_unused]] A a, [[maybe_unused]] B b) {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::shapes_match<op::in_operator_minus, SA, SB>,
                  "mnemo: operator- needs operands of the same shape, or one scalar operand.");
    if constexpr (!check::broadcastable<SA, SB>) return zero_of<SA>{};
    else {
        using R = detail::broadcast_shape_t<SA, SB>;
        if constexpr (is_constant_v<A> && is_constant_v<B>) return detail::const_sub<A, B>{};
        else if constexpr (std::is_same_v<A, B>) return zero_of<R>{};
        else if constexpr (is_zero_v<B>) return detail::broadcast_to<R>(a);
        else if constexpr (is_zero_v<A>) return detail::broadcast_to<R>(-b);
        else return node<sub_op, A, B>{};
    }
}

template <expression A>
constexpr auto operator-([[maybe_unused]] A a) {
    if constexpr (is_constant_v<A>) return make_constant<-A::num, A::den>{};
    else if constexpr (is_zero_v<A>) return a;
    else if constexpr (has_op_v<A, neg_op>) return detail::type_at_t<typename A::children, 0>{};
    else return node<neg_op, A>{};
}

template <expression A, expression B>
constexpr auto hadamard_fn::operator()([[maybe_unused]] A a, [[maybe_unused]] B b) const {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::shapes_match<op::in_hadamard, SA, SB>,
                  "mnemo: the elementwise product needs operands of the same shape, or one scalar.");
    if constexpr (!check::broadcastable<SA, SB>) return zero_of<SA>{};
    else {
        using R = detail::broadcast_shape_t<SA, SB>;
        using A1 = typename detail::strip_fill<A>::type;
        using B1 = typename detail::strip_fill<B>::type;
        if constexpr (!std::is_same_v<A1, A> || !std::is_same_v<B1, B>)
            return detail::broadcast_to<R>(hadamard(A1{}, B1{}));
        else if constexpr (is_constant_v<A> && is_constant_v<B>) return detail::const_mul<A, B>{};
        else if constexpr (is_zero_v<A> || is_zero_v<B>) return zero_of<R>{};
        else if constexpr (is_one_v<A>) return detail::broadcast_to<R>(b);
        else if constexpr (is_one_v<B>) return detail::broadcast_to<R>(a);
        else if constexpr (std::is_same_v<A, constant<-1>>) return detail::broadcast_to<R>(-b);
        else if constexpr (std::is_same_v<B, constant<-1>>) return detail::broadcast_to<R>(-a);
        else if constexpr (SB::rank == 0 && SA::rank != 0) return node<mul_op, B, A>{};  // scalar first
        else return node<mul_op, A, B>{};
    }
}

template <expression A, expression B>
constexpr auto operator/([[maybe_unused]] A a, B) {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::shapes_match<op::in_operator_divide, SA, SB>,
                  "mnemo: operator/ needs operands of the same shape, or one scalar operand.");
    if constexpr (!check::broadcastable<SA, SB>) return zero_of<SA>{};
    else {
        using R = detail::broadcast_shape_t<SA, SB>;
        if constexpr (is_constant_v<A> && is_constant_v<B>) return detail::const_div<A, B>{};
        else if constexpr (is_zero_v<A>) return zero_of<R>{};
        else if constexpr (is_one_v<B>) return detail::broadcast_to<R>(a);
        else if constexpr (is_constant_v<B>) return hadamard(detail::const_div<constant<1>, B>{}, a);
        else return node<div_op, A, B>{};
    }
}

}  // namespace mnemo
