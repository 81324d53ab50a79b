#pragma once
/// \file
/// The Huber function and the two elementwise helpers its derivatives need.

#include "mnemo/expr/ops/elementwise.hpp"

namespace mnemo {

/// 1 where |r| <= delta, else 0. Its own derivative is zero.
struct huber_inside_op {
    static constexpr op_kind kind = op_kind::elementwise;
    static constexpr std::string_view name = "huber_inside";
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T r, T d) { return std::abs(r) <= d ? T(1) : T(0); }
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, G, A, B) { return zero_of<typename Self::shape>{}; }
};

/// clip(r, -delta, delta): the derivative of the Huber function with respect to r.
struct huber_clip_op {
    static constexpr op_kind kind = op_kind::elementwise;
    static constexpr std::string_view name = "huber_clip";
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T r, T d) { return r > d ? d : (r < -d ? -d : r); }
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A r, [[maybe_unused]] B d) {
        auto inside = node<huber_inside_op, A, B>{};
        if constexpr (I == 0) return hadamard(g, inside);
        else return hadamard(g, hadamard(sign(r), c<1> - inside));
    }
};

struct huber_op {
    static constexpr op_kind kind = op_kind::elementwise;
    static constexpr std::string_view name = "huber";
    template <class A, class B>
    using result_shape = detail::broadcast_shape_t<A, B>;
    template <class T>
    static T apply(T r, T d) {
        const T a = std::abs(r);
        return a <= d ? T(0.5) * r * r : d * (a - T(0.5) * d);
    }
    /// d/dr = clip(r, -delta, delta);  d/ddelta = (|r| - delta) where |r| > delta, else 0
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A r, [[maybe_unused]] B d) {
        if constexpr (I == 0) return hadamard(g, node<huber_clip_op, A, B>{});
        else return hadamard(g, hadamard(abs(r) - d, c<1> - node<huber_inside_op, A, B>{}));
    }
};

template <expression R, expression D>
constexpr auto huber_fn::operator()(R, D) const {
    static_assert(check::huber_delta_shape<shape_of<R>, shape_of<D>>,
                  "mnemo: huber(r, delta) needs delta to be a scalar or of r's shape.");
    if constexpr (!check::huber_delta_shape<shape_of<R>, shape_of<D>>) return constant<0>{};
    else return node<huber_op, R, D>{};
}

}  // namespace mnemo
