// Derivatives with known closed forms, checked against those forms computed by hand with
// plain loops (relative error 1e-12), and `to_string` of small derivatives, the expected
// strings derived by hand from the derivative rules and the builders' simplifications.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "support/fd.hpp"

namespace {

using namespace mnemo_test;

constexpr std::size_t n = 5;
constexpr auto A = mnemo::matrix<"A", n, n>;
constexpr auto x = mnemo::vector<"x", n>;
constexpr auto u = mnemo::vector<"u", n>;
constexpr auto M = mnemo::matrix<"M", n, n>;
constexpr auto U = mnemo::matrix<"U", n, n>;
constexpr auto k = mnemo::vector<"k", n>;
constexpr auto v = mnemo::vector<"v", n>;

constexpr double rel = 1e-12;
constexpr double floor_ = 1e-9;  // entries are O(0.1 - 10); the floor only guards exact zeros

using mat = xt::xtensor<double, 2>;
using vec = xt::xtensor<double, 1>;  // (construct with xt::zeros: vec({n}) is a 1-element tensor)

template <std::size_t R>
xt::xtensor<double, R> det(std::array<std::size_t, R> shape, double phase, double scale) {
    xt::xtensor<double, R> a(shape);
    fd::det_fill(a, phase, scale);
    return a;
}

/// Worst elementwise relative error of a plan result against a hand-computed tensor.
template <class P, class E>
double worst_rel(const P& got, const E& expected) {
    const ref::tensor g = ref::from_xt(got), e = ref::from_xt(expected);
    REQUIRE(g.shape == e.shape);
    return fd::compare(g, e, floor_).err;
}

}  // namespace

TEST_CASE("closed form: grad of the quadratic form x^T A x is (A + A^T) x") {
    const mat a = det<2>({n, n}, 0.5, 1.0);
    const vec xv = det<1>({n}, 1.5, 1.0);
    const vec uv = det<1>({n}, 2.5, 1.0);

    const auto f = mnemo::dot(x, A * x);
    const auto g = mnemo::grad(f, x);
    const auto hvp = mnemo::grad(mnemo::sum(mnemo::hadamard(g, u)), x);  // (A + A^T) u
    const auto mixed = mnemo::grad(mnemo::sum(mnemo::hadamard(g, u)), A);  // u x^T + x u^T
    auto p = mnemo::compile<double>(f, g, hvp, mixed);
    auto [fv, gv, hv, mv] = p(A = a, x = xv, u = uv);

    double f_ref = 0.0;
    vec g_ref = xt::zeros<double>({n}), h_ref = xt::zeros<double>({n});
    mat m_ref = xt::zeros<double>({n, n});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            f_ref += xv(i) * a(i, j) * xv(j);
            g_ref(i) += (a(i, j) + a(j, i)) * xv(j);
            h_ref(i) += (a(i, j) + a(j, i)) * uv(j);
            m_ref(i, j) = uv(i) * xv(j) + xv(i) * uv(j);
        }
    CHECK(fd::rel_err(fv, f_ref, floor_) <= rel);
    CHECK(worst_rel(gv, g_ref) <= rel);
    CHECK(worst_rel(hv, h_ref) <= rel);
    CHECK(worst_rel(mv, m_ref) <= rel);
}

TEST_CASE("closed form: least squares in a matrix, grad, Hessian-vector product, mixed") {
    // f = ||M k - v||^2:  grad_M f = 2 (M k - v) k^T,  d/dM <grad_M f, U> = 2 U k k^T,
    // d/dk <grad_M f, U> = 2 (M^T U k + U^T (M k - v)),  d/dv <grad_M f, U> = -2 U k.
    const mat m = det<2>({n, n}, 0.5, 0.3);
    const mat uu = det<2>({n, n}, 3.5, 1.0);
    const vec kv = det<1>({n}, 1.5, 1.0);
    const vec vv = det<1>({n}, 2.5, 1.0);

    const auto f = mnemo::sum(mnemo::square(M * k - v));
    const auto g = mnemo::grad(f, M);
    const auto phi = mnemo::sum(mnemo::hadamard(g, U));
    auto p = mnemo::compile<double>(f, g, mnemo::grad(phi, M), mnemo::grad(phi, k), mnemo::grad(phi, v));
    auto [fv, gv, hv, dk, dv] = p(M = m, U = uu, k = kv, v = vv);

    vec r = xt::zeros<double>({n});  // M k - v
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) r(i) += m(i, j) * kv(j);
        r(i) -= vv(i);
    }
    vec uk = xt::zeros<double>({n});  // U k
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) uk(i) += uu(i, j) * kv(j);
    double f_ref = 0.0;
    mat g_ref = xt::zeros<double>({n, n}), h_ref = xt::zeros<double>({n, n});
    vec dk_ref = xt::zeros<double>({n}), dv_ref = xt::zeros<double>({n});
    for (std::size_t i = 0; i < n; ++i) {
        f_ref += r(i) * r(i);
        dv_ref(i) = -2.0 * uk(i);
        for (std::size_t j = 0; j < n; ++j) {
            g_ref(i, j) = 2.0 * r(i) * kv(j);
            h_ref(i, j) = 2.0 * uk(i) * kv(j);
            dk_ref(j) += 2.0 * (m(i, j) * uk(i) + uu(i, j) * r(i));  // (M^T U k)_j + (U^T r)_j
        }
    }
    CHECK(fd::rel_err(fv, f_ref, floor_) <= rel);
    CHECK(worst_rel(gv, g_ref) <= rel);
    CHECK(worst_rel(hv, h_ref) <= rel);
    CHECK(worst_rel(dk, dk_ref) <= rel);
    CHECK(worst_rel(dv, dv_ref) <= rel);
}

TEST_CASE("closed form: one tanh layer, grad_A and grad_x of sum(u * tanh(A x))") {
    // grad_A = (u * (1 - tanh(A x)^2)) x^T,  grad_x = A^T (u * (1 - tanh(A x)^2))
    const mat a = det<2>({n, n}, 0.5, 0.5);
    const vec xv = det<1>({n}, 1.5, 1.0);
    const vec uv = det<1>({n}, 2.5, 1.0);
    const auto f = mnemo::sum(mnemo::hadamard(u, mnemo::tanh(A * x)));
    auto p = mnemo::compile<double>(mnemo::grad(f, A), mnemo::grad(f, x));
    auto [ga, gx] = p(A = a, x = xv, u = uv);

    vec delta = xt::zeros<double>({n});
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (std::size_t j = 0; j < n; ++j) s += a(i, j) * xv(j);
        const double t = std::tanh(s);
        delta(i) = uv(i) * (1.0 - t * t);
    }
    mat ga_ref = xt::zeros<double>({n, n});
    vec gx_ref = xt::zeros<double>({n});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            ga_ref(i, j) = delta(i) * xv(j);
            gx_ref(j) += a(i, j) * delta(i);
        }
    CHECK(worst_rel(ga, ga_ref) <= rel);
    CHECK(worst_rel(gx, gx_ref) <= rel);
}

TEST_CASE("closed form: erf, its first and second derivatives, and gelu_exact at points") {
    // d/dx erf(x) = 2/sqrt(pi) exp(-x^2),  d^2/dx^2 erf(x) = -2 x * 2/sqrt(pi) exp(-x^2);
    // gelu_exact(x) = x/2 (1 + erf(x / sqrt(2))), d/dx gelu_exact(x) = Phi(x) + x phi(x) with
    // Phi(x) = (1 + erf(x / sqrt(2))) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    // pi is std::acos(-1); the library's constants 2/sqrt(pi) and 1/sqrt(2) are rationals.
    constexpr auto s = mnemo::scalar<"s">;
    const auto d_erf = mnemo::grad(mnemo::erf(s), s);
    const auto d2_erf = mnemo::grad(d_erf, s);
    const auto ge = mnemo::gelu_exact(s);
    auto p = mnemo::compile<double>(mnemo::erf(s), d_erf, d2_erf, ge, mnemo::grad(ge, s));
    const double pi = std::acos(-1.0);
    const double eps = 1e-14;  // relative (floor 1e-300: no point is near a zero)
    for (const double xv : {-2.5, -1.5, -1.0, -0.3, 0.2, 0.5, 1.0, 1.7, 3.0}) {
        auto [e, de, d2e, g, dg] = p(s = xv);
        INFO("x = " << xv);
        const double de_ref = 2.0 / std::sqrt(pi) * std::exp(-xv * xv);
        const double big_phi = 0.5 * (1.0 + std::erf(xv / std::sqrt(2.0)));
        const double small_phi = std::exp(-0.5 * xv * xv) / std::sqrt(2.0 * pi);
        CHECK(fd::rel_err(e, std::erf(xv), 1e-300) <= eps);
        CHECK(fd::rel_err(de, de_ref, 1e-300) <= eps);
        CHECK(fd::rel_err(d2e, -2.0 * xv * de_ref, 1e-300) <= eps);
        CHECK(fd::rel_err(g, 0.5 * xv * (1.0 + std::erf(xv / std::sqrt(2.0))), 1e-300) <= eps);
        CHECK(fd::rel_err(dg, big_phi + xv * small_phi, 1e-300) <= eps);
    }
    // Against decimal values: gelu_exact(1) = Phi(1) = 0.841344746068542948585...,
    // gelu_exact(-1) = -(1 - Phi(1)), and erf'(0) = 2/sqrt(pi) = 1.128379167095512573896...
    CHECK(fd::rel_err(std::get<3>(p(s = 1.0)), 0.8413447460685429486, 1e-300) <= eps);
    CHECK(fd::rel_err(std::get<3>(p(s = -1.0)), -0.1586552539314570514, 1e-300) <= eps);
    CHECK(fd::rel_err(std::get<1>(p(s = 0.0)), 1.1283791670955125739, 1e-300) <= 1e-16);
    CHECK(std::get<0>(p(s = 0.0)) == 0.0);
    CHECK(std::get<3>(p(s = 0.0)) == 0.0);
}

TEST_CASE("to_string of small derivatives (expected strings derived by hand from the rules)") {
    using mnemo::grad;
    using mnemo::to_string;
    const auto ls = mnemo::sum(mnemo::square(M * k - v));
    // sum -> fill(1); square -> hadamard(fill(1), 2 * r) folds to 2 * r; the product's
    // rule for a vector right operand gives outer(g, k).
    CHECK(to_string(ls) == "sum((M @ k - v)^2)");
    CHECK(to_string(grad(ls, M)) == "outer(2 * (M @ k - v), k)");
    // Hessian-vector product: the adjoint U of outer(.., k) gives U @ k, then 2 * (U @ k)
    // (the constant goes first), then outer(.., k).
    CHECK(to_string(grad(mnemo::sum(mnemo::hadamard(grad(ls, M), U)), M)) == "outer(2 * (U @ k), k)");
    // x^T A x: the product node contributes A @ x (through its first operand) before the
    // matrix product contributes A^T @ x.
    CHECK(to_string(grad(mnemo::dot(x, A * x), x)) == "A @ x + A^T @ x");
    // Elementwise functions.
    CHECK(to_string(grad(mnemo::sum(mnemo::tanh(x)), x)) == "1 - tanh(x)^2");
    CHECK(to_string(grad(mnemo::sum(mnemo::hadamard(u, mnemo::sigmoid(x))), x)) ==
          "u * (sigmoid(x) * (1 - sigmoid(x)))");
    CHECK(to_string(grad(mnemo::sum(mnemo::relu(x)), x)) == "step(x)");
    // 2/sqrt(pi) = 11283791670955126/10^16, normalised.
    CHECK(to_string(grad(mnemo::sum(mnemo::erf(x)), x)) == "5641895835477563/5000000000000000 * exp(-x^2)");
    CHECK(to_string(grad(mnemo::sum(mnemo::hadamard(grad(mnemo::sum(mnemo::exp(x)), x), u)), x)) == "u * exp(x)");
    // mean: 1/4 * sum(x^2): the constants are not folded across the nested product.
    CHECK(to_string(grad(mnemo::mean(mnemo::square(mnemo::vector<"y", 4>)), mnemo::vector<"y", 4>)) ==
          "1/4 * (2 * y)");
    // A linear function's gradient is a leaf.
    CHECK(to_string(grad(mnemo::dot(u, x), x)) == "u");
    CHECK(to_string(grad(mnemo::c<3> * mnemo::scalar<"s">, mnemo::scalar<"s">)) == "3");
}

TEST_CASE("closed form: stop_gradient(e) has the value of e and a zero derivative") {
    // f = sum(u * stop_gradient(A x) * (A x)):  grad_A f = (u * A x) x^T  (only the second factor),
    // grad_x f = A^T (u * A x),  and the value of f is sum(u * (A x)^2).
    const mat a = det<2>({n, n}, 0.5, 0.5);
    const vec xv = det<1>({n}, 1.5, 1.0);
    const vec uv = det<1>({n}, 2.5, 1.0);
    const auto f = mnemo::sum(mnemo::hadamard(u, mnemo::hadamard(mnemo::stop_gradient(A * x), A * x)));
    auto p = mnemo::compile<double>(f, mnemo::grad(f, A), mnemo::grad(f, x));
    auto [fv, ga, gx] = p(A = a, x = xv, u = uv);

    vec ax = xt::zeros<double>({n});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) ax(i) += a(i, j) * xv(j);
    double f_ref = 0.0;
    mat ga_ref = xt::zeros<double>({n, n});
    vec gx_ref = xt::zeros<double>({n});
    for (std::size_t i = 0; i < n; ++i) {
        f_ref += uv(i) * ax(i) * ax(i);
        for (std::size_t j = 0; j < n; ++j) {
            ga_ref(i, j) = uv(i) * ax(i) * xv(j);
            gx_ref(j) += a(i, j) * uv(i) * ax(i);
        }
    }
    CHECK(fd::rel_err(fv, f_ref, floor_) <= rel);
    CHECK(worst_rel(ga, ga_ref) <= rel);
    CHECK(worst_rel(gx, gx_ref) <= rel);

    // Only through stop_gradient: the derivative is the zero of the symbol's shape.
    const auto g = mnemo::grad(mnemo::sum(mnemo::stop_gradient(mnemo::tanh(A * x))), A);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(g)>, mnemo::zero_tensor<mnemo::shape<n, n>>>);
    CHECK(mnemo::to_string(mnemo::stop_gradient(mnemo::tanh(x))) == "stop_gradient(tanh(x))");
}
