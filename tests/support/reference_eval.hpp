#pragma once
/// \file
/// A deliberately naive reference evaluator for mnemo expressions, independent of the
/// library's evaluator (`mnemo::plan`).
///
/// It walks the expression tree recursively, with no caching and no fusion: a shared
/// subexpression is recomputed once per path to it. Every node kind is computed from its
/// mathematical definition, not from the library's kernels: matrix products by triple
/// loops (no BLAS), elementwise functions by calling <cmath> directly (sigmoid as
/// 1 / (1 + exp(-x)), huber by its piecewise definition, ...), never through `Op::apply`.
/// Only the *types* of the library are used: the node structure, the op tags (to know
/// which operation a node is) and the leaves' compile-time data (names, shapes, rational
/// constants). Each result's shape is checked against the node's compile-time shape.
///
/// Data: `ref::tensor` (row-major, shape `{}`, `{n}` or `{m, n}`), bound by symbol name
/// in a `ref::bindings` map. `derivative<F, X>` (what `grad` returns) is replaced by its
/// expression with `mnemo::unwrap_t` before the walk.
///
/// An op tag the evaluator does not know is a compile error (no overload of `apply_op`),
/// so a new operation in the library cannot silently escape the reference checks.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <mnemo/mnemo.hpp>

namespace mnemo_test::ref {

/// A dense row-major tensor of rank 0, 1 or 2.
struct tensor {
    std::vector<std::size_t> shape;  // {} scalar, {n} vector, {m, n} matrix
    std::vector<double> data;

    tensor() : data(1, 0.0) {}
    explicit tensor(std::vector<std::size_t> s, double fill_value = 0.0) : shape(std::move(s)) {
        std::size_t n = 1;
        for (std::size_t d : shape) n *= d;
        data.assign(n, fill_value);
    }
    static tensor scalar(double v) {
        tensor t;
        t.data[0] = v;
        return t;
    }

    std::size_t rank() const { return shape.size(); }
    std::size_t size() const { return data.size(); }
    std::size_t rows() const { return shape.empty() ? 1 : shape[0]; }
    std::size_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
    double& operator[](std::size_t i) { return data[i]; }
    double operator[](std::size_t i) const { return data[i]; }
    double& at(std::size_t r, std::size_t c) { return data[r * cols() + c]; }
    double at(std::size_t r, std::size_t c) const { return data[r * cols() + c]; }
    double value() const {  // the value of a scalar
        if (rank() != 0) throw std::logic_error("ref::tensor::value() on a non-scalar");
        return data[0];
    }
};

/// Symbol name -> data.
using bindings = std::map<std::string, tensor>;

/// A copy of an xtensor container / adaptor / view (row-major iteration), or of a number.
template <class X>
tensor from_xt(const X& x) {
    if constexpr (std::is_arithmetic_v<X>) {
        return tensor::scalar(static_cast<double>(x));
    } else {
        std::vector<std::size_t> s;
        for (std::size_t k = 0; k < x.dimension(); ++k) s.push_back(static_cast<std::size_t>(x.shape()[k]));
        tensor t(s);
        std::size_t i = 0;
        for (auto it = x.begin(); it != x.end(); ++it) t.data[i++] = static_cast<double>(*it);
        if (i != t.size()) throw std::logic_error("ref::from_xt: element count mismatch");
        return t;
    }
}

/// The dims of a compile-time `mnemo::shape<...>`.
template <class S>
std::vector<std::size_t> shape_vec() {
    return std::vector<std::size_t>(S::dims.begin(), S::dims.end());
}

inline std::string shape_str(const std::vector<std::size_t>& s) {
    std::string r = "(";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + ")";
}

namespace detail {

// ---------------------------------------------------------------------------------------
// Elementwise helpers (scalar broadcasting: a rank-0 operand applies to every entry).

template <class F>
tensor map1(const tensor& a, F f) {
    tensor r(a.shape);
    for (std::size_t i = 0; i < a.size(); ++i) r[i] = f(a[i]);
    return r;
}

template <class F>
tensor map2(const tensor& a, const tensor& b, F f) {
    if (a.rank() != 0 && b.rank() != 0 && a.shape != b.shape)
        throw std::logic_error("ref: elementwise operands of shapes " + shape_str(a.shape) + " and " +
                               shape_str(b.shape));
    tensor r(a.rank() != 0 ? a.shape : b.shape);
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = f(a[a.size() == 1 ? 0 : i], b[b.size() == 1 ? 0 : i]);
    return r;
}

// ---------------------------------------------------------------------------------------
// One overload per op tag of include/mnemo/expr/ops. Each is the textbook definition.

inline tensor apply_op(mnemo::add_op, const tensor& a, const tensor& b) {
    return map2(a, b, [](double x, double y) { return x + y; });
}
inline tensor apply_op(mnemo::sub_op, const tensor& a, const tensor& b) {
    return map2(a, b, [](double x, double y) { return x - y; });
}
inline tensor apply_op(mnemo::mul_op, const tensor& a, const tensor& b) {
    return map2(a, b, [](double x, double y) { return x * y; });
}
inline tensor apply_op(mnemo::div_op, const tensor& a, const tensor& b) {
    return map2(a, b, [](double x, double y) { return x / y; });
}
inline tensor apply_op(mnemo::neg_op, const tensor& a) {
    return map1(a, [](double x) { return -x; });
}
/// stop_gradient(e) evaluates to e (it only changes derivatives).
inline tensor apply_op(mnemo::stop_gradient_op, const tensor& a) { return a; }

/// Matrix (m, k) times matrix (k, n) or vector (k): triple loops, no BLAS.
inline tensor apply_op(mnemo::matmul_op, const tensor& a, const tensor& b) {
    if (a.rank() != 2 || b.rank() < 1 || a.shape[1] != b.shape[0])
        throw std::logic_error("ref: matmul of shapes " + shape_str(a.shape) + " and " + shape_str(b.shape));
    const std::size_t m = a.shape[0], k = a.shape[1];
    if (b.rank() == 1) {
        tensor r({m});
        for (std::size_t i = 0; i < m; ++i) {
            double s = 0.0;
            for (std::size_t p = 0; p < k; ++p) s += a.at(i, p) * b[p];
            r[i] = s;
        }
        return r;
    }
    const std::size_t n = b.shape[1];
    tensor r({m, n});
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0.0;
            for (std::size_t p = 0; p < k; ++p) s += a.at(i, p) * b.at(p, j);
            r.at(i, j) = s;
        }
    return r;
}

inline tensor apply_op(mnemo::outer_op, const tensor& u, const tensor& v) {
    if (u.rank() != 1 || v.rank() != 1) throw std::logic_error("ref: outer of non-vectors");
    tensor r({u.size(), v.size()});
    for (std::size_t i = 0; i < u.size(); ++i)
        for (std::size_t j = 0; j < v.size(); ++j) r.at(i, j) = u[i] * v[j];
    return r;
}

inline tensor apply_op(mnemo::transpose_op, const tensor& a) {
    if (a.rank() != 2) throw std::logic_error("ref: transpose of a non-matrix");
    tensor r({a.shape[1], a.shape[0]});
    for (std::size_t i = 0; i < a.shape[0]; ++i)
        for (std::size_t j = 0; j < a.shape[1]; ++j) r.at(j, i) = a.at(i, j);
    return r;
}

inline tensor apply_op(mnemo::sum_op, const tensor& a) {
    double s = 0.0;
    for (double x : a.data) s += x;
    return tensor::scalar(s);
}

template <class S>
tensor apply_op(mnemo::fill_op<S>, const tensor& a) {
    return tensor(shape_vec<S>(), a.value());
}

template <int N>
tensor apply_op(mnemo::ipow_op<N>, const tensor& a) {
    return map1(a, [](double x) { return std::pow(x, N); });
}

inline tensor apply_op(mnemo::exp_op, const tensor& a) {
    return map1(a, [](double x) { return std::exp(x); });
}
inline tensor apply_op(mnemo::log_op, const tensor& a) {
    return map1(a, [](double x) { return std::log(x); });
}
inline tensor apply_op(mnemo::sqrt_op, const tensor& a) {
    return map1(a, [](double x) { return std::sqrt(x); });
}
inline tensor apply_op(mnemo::tanh_op, const tensor& a) {
    return map1(a, [](double x) { return std::tanh(x); });
}
inline tensor apply_op(mnemo::erf_op, const tensor& a) {
    return map1(a, [](double x) { return std::erf(x); });
}
inline tensor apply_op(mnemo::sigmoid_op, const tensor& a) {
    return map1(a, [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
}
inline tensor apply_op(mnemo::softplus_op, const tensor& a) {
    // log(1 + e^x); log1p for accuracy where e^x is small. Test inputs stay moderate.
    return map1(a, [](double x) { return std::log1p(std::exp(x)); });
}
inline tensor apply_op(mnemo::relu_op, const tensor& a) {
    return map1(a, [](double x) { return x > 0.0 ? x : 0.0; });
}
inline tensor apply_op(mnemo::step_op, const tensor& a) {
    return map1(a, [](double x) { return x > 0.0 ? 1.0 : 0.0; });
}
inline tensor apply_op(mnemo::abs_op, const tensor& a) {
    return map1(a, [](double x) { return std::fabs(x); });
}
inline tensor apply_op(mnemo::sign_op, const tensor& a) {
    return map1(a, [](double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0); });
}
/// huber(r, d) = r^2 / 2 where |r| <= d, else d (|r| - d / 2).
inline tensor apply_op(mnemo::huber_op, const tensor& r, const tensor& d) {
    return map2(r, d, [](double x, double dl) {
        return std::fabs(x) <= dl ? 0.5 * x * x : dl * (std::fabs(x) - 0.5 * dl);
    });
}
/// d huber / d r = clip(r, -d, d).
inline tensor apply_op(mnemo::huber_clip_op, const tensor& r, const tensor& d) {
    return map2(r, d, [](double x, double dl) { return std::min(std::max(x, -dl), dl); });
}
/// Indicator of |r| <= d.
inline tensor apply_op(mnemo::huber_inside_op, const tensor& r, const tensor& d) {
    return map2(r, d, [](double x, double dl) { return std::fabs(x) <= dl ? 1.0 : 0.0; });
}

// ---------------------------------------------------------------------------------------
// The tree walk.

template <class E>
struct walk {
    static_assert(sizeof(E) == 0, "ref::evaluate: unknown expression node type");
};

/// The data bound to a symbol, checked against its compile-time shape.
inline const tensor& lookup(const bindings& b, std::string_view sym, const std::size_t* dims, std::size_t rank) {
    const std::string name(sym);
    auto it = b.find(name);
    if (it == b.end()) throw std::invalid_argument("ref::evaluate: no data bound to symbol '" + name + "'");
    const std::vector<std::size_t> want(dims, dims + rank);
    if (it->second.shape != want)
        throw std::invalid_argument("ref::evaluate: symbol '" + name + "' has shape " + shape_str(want) +
                                    " but data of shape " + shape_str(it->second.shape));
    return it->second;
}

/// Throws unless `r` has the shape `dims[0..rank)` (a node's compile-time shape).
inline void expect_shape(const tensor& r, const std::size_t* dims, std::size_t rank) {
    const std::vector<std::size_t> want(dims, dims + rank);
    if (r.shape != want)
        throw std::logic_error("ref::evaluate: a node computed shape " + shape_str(r.shape) +
                               " but its type says " + shape_str(want));
}

template <mnemo::fixed_string N, class S>
struct walk<mnemo::symbol<N, S>> {
    static tensor run(const bindings& b) { return lookup(b, N.view(), S::dims.data(), S::rank); }
};

template <std::int64_t N, std::int64_t D>
struct walk<mnemo::constant<N, D>> {
    static tensor run(const bindings&) { return tensor::scalar(double(N) / double(D)); }
};

template <class S>
struct walk<mnemo::zero_tensor<S>> {
    static tensor run(const bindings&) { return tensor(shape_vec<S>(), 0.0); }
};

template <class Op, class... A>
struct walk<mnemo::node<Op, A...>> {
    static tensor run(const bindings& b) {
        tensor r = apply_op(Op{}, walk<A>::run(b)...);
        using S = typename mnemo::node<Op, A...>::shape;
        expect_shape(r, S::dims.data(), S::rank);
        return r;
    }
};

}  // namespace detail

/// The value of the expression `e` (any mnemo expression, `derivative<...>` included)
/// with the symbols bound by name in `b`.
template <class E>
tensor evaluate(E, const bindings& b) {
    return detail::walk<mnemo::unwrap_t<E>>::run(b);
}

/// Number of root-to-leaf paths of the expression tree (the reference's cost, roughly).
template <class E>
struct tree_size;
template <class E>
struct tree_size {
    static constexpr double value = 1.0;
};
template <class Op, class... A>
struct tree_size<mnemo::node<Op, A...>> {
    static constexpr double value = 1.0 + (0.0 + ... + tree_size<A>::value);
};

}  // namespace mnemo_test::ref
