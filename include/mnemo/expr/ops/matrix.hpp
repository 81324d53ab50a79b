#pragma once
/// \file
/// Matrix product (`operator*` on a matrix), `outer`, `transpose`, `dot`.
///
/// Design note: chains of products are right-associated onto vectors as they are built,
/// `(A * B) * x` becomes `A * (B * x)`: two matrix-vector products instead of a
/// matrix-matrix product, and the gradients of such chains stay matrix-vector too.

#include "mnemo/expr/ops/arithmetic.hpp"

namespace mnemo {

struct matmul_op {
    static constexpr op_kind kind = op_kind::matmul;
    template <class A, class B>
    struct shape_impl {
        using type = shape<A::dims[0], B::dims[1]>;
    };
    template <class A, std::size_t K>
    struct shape_impl<A, shape<K>> {
        using type = shape<A::dims[0]>;
    };
    template <class A, class B>
    using result_shape = typename shape_impl<A, B>::type;
    /// C = A B:  dA = G B^T,  dB = A^T G;   y = A x:  dA = g x^T,  dx = A^T g
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a, [[maybe_unused]] B b) {
        if constexpr (I == 0) {
            if constexpr (shape_of<B>::rank == 1) return outer(g, b);
            else return g * transpose(b);
        } else {
            return transpose(a) * g;
        }
    }
};

struct outer_op {
    static constexpr op_kind kind = op_kind::outer;
    template <class A, class B>
    using result_shape = shape<A::dims[0], B::dims[0]>;
    /// M = u v^T:  du = G v,  dv = G^T u
    template <std::size_t I, class Self, class G, class A, class B>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, [[maybe_unused]] A a, [[maybe_unused]] B b) {
        if constexpr (I == 0) return g * b;
        else return transpose(g) * a;
    }
};

struct transpose_op {
    static constexpr op_kind kind = op_kind::transpose;
    template <class A>
    using result_shape = shape<A::dims[1], A::dims[0]>;
    template <std::size_t I, class Self, class G, class A>
    static constexpr auto vjp(Self, [[maybe_unused]] G g, A) { return transpose(g); }
};

namespace detail {

template <class A, class B>
constexpr auto matmul([[maybe_unused]] A a, [[maybe_unused]] B b) {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::product_shapes_match<op::in_matrix_product, SA, SB>,
                  "mnemo: a matrix product needs a matrix (m, k) times a matrix (k, n) or a vector (k).");
    if constexpr (!check::product_shapes_match<op::in_matrix_product, SA, SB>) return zero_of<SA>{};
    else {
        using R = typename matmul_op::template result_shape<SA, SB>;
        if constexpr (is_zero_v<A> || is_zero_v<B>) return zero_of<R>{};
        else if constexpr (SB::rank == 1 && has_op_v<A, matmul_op>) {
            using L = type_at_t<typename A::children, 0>;
            using M = type_at_t<typename A::children, 1>;
            return matmul(L{}, matmul(M{}, b));
        } else if constexpr (has_op_v<A, outer_op> && SB::rank == 1) {
            // (u v^T) x = u (v . x): no matrix is formed.
            using U = type_at_t<typename A::children, 0>;
            using V = type_at_t<typename A::children, 1>;
            return hadamard(sum(hadamard(V{}, b)), U{});
        } else return node<matmul_op, A, B>{};
    }
}

}  // namespace detail

/// `a * b`: the matrix product when `a` is a matrix; the elementwise product when either
/// operand is a scalar or both are vectors.
template <expression A, expression B>
constexpr auto operator*([[maybe_unused]] A a, [[maybe_unused]] B b) {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    if constexpr (SA::rank == 0 || SB::rank == 0 || (SA::rank == 1 && SB::rank == 1)) return hadamard(a, b);
    else {
        static_assert(check::is_matrix_shape<op::in_operator_times_the_left_operand_must_be_the_matrix__write_transpose_A_times_v, SA>,
                      "mnemo: operator* with a matrix operand needs the matrix on the left.");
        if constexpr (SA::rank == 2) return detail::matmul(a, b);
        else return zero_of<SB>{};
    }
}

template <expression A>
constexpr auto transpose_fn::operator()([[maybe_unused]] A a) const {
    using SA = shape_of<A>;
    static_assert(check::is_matrix_shape<op::in_transpose, SA>, "mnemo: transpose needs a matrix.");
    if constexpr (SA::rank != 2) return a;
    else if constexpr (is_zero_v<A>) return zero_of<shape<SA::dims[1], SA::dims[0]>>{};
    else if constexpr (has_op_v<A, transpose_op>) return detail::type_at_t<typename A::children, 0>{};
    else if constexpr (has_op_v<A, outer_op>) {
        using U = detail::type_at_t<typename A::children, 0>;
        using V = detail::type_at_t<typename A::children, 1>;
        return outer(V{}, U{});
    } else return node<transpose_op, A>{};
}

template <expression A, expression B>
constexpr auto outer_fn::operator()(A, B) const {
    using SA = shape_of<A>;
    using SB = shape_of<B>;
    static_assert(check::is_vector_shape<op::in_outer_first_operand, SA>, "mnemo: outer(u, v) needs two vectors.");
    static_assert(check::is_vector_shape<op::in_outer_second_operand, SB>, "mnemo: outer(u, v) needs two vectors.");
    if constexpr (SA::rank != 1 || SB::rank != 1) return constant<0>{};
    else if constexpr (is_zero_v<A> || is_zero_v<B>) return zero_of<shape<SA::dims[0], SB::dims[0]>>{};
    else return node<outer_op, A, B>{};
}

/// `dot(u, v)`: the scalar product of two vectors, `sum(u * v)`.
struct dot_fn {
    template <expression A, expression B>
    constexpr auto operator()([[maybe_unused]] A a, [[maybe_unused]] B b) const {
        static_assert(check::is_vector_shape<op::in_dot_first_operand, shape_of<A>> &&
                          check::is_vector_shape<op::in_dot_second_operand, shape_of<B>>,
                      "mnemo: dot(u, v) needs two vectors.");
        static_assert(check::shapes_match<op::in_dot, shape_of<A>, shape_of<B>> &&
                          std::is_same_v<shape_of<A>, shape_of<B>>,
                      "mnemo: dot(u, v) needs two vectors of the same size.");
        if constexpr (std::is_same_v<shape_of<A>, shape_of<B>>) return sum(hadamard(a, b));
        else return constant<0>{};
    }
};
inline constexpr dot_fn dot{};

}  // namespace mnemo
