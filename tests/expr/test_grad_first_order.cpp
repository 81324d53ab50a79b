// First derivatives of every operation: `grad(f, X)` evaluated by a plan, against central
// finite differences of f (computed with the plan and with the independent reference
// evaluator), and against the reference evaluator's value of the same gradient
// expression. See tests/support/fd.hpp for the harness and the error measure.
//
// This file: the elementwise functions (unary, huber), on vector, matrix and scalar
// inputs. test_grad_first_order_linear.cpp: arithmetic, scalar broadcasting, products,
// transposes, outer, dot, reductions (split for compile time).
#include <doctest/doctest.h>

#include "support/fd.hpp"

namespace {

using namespace mnemo_test;
using fd::data_for;

constexpr auto A = mnemo::matrix<"A", 4, 3>;
constexpr auto x = mnemo::vector<"x", 3>;
constexpr auto b = mnemo::vector<"b", 4>;
constexpr auto w = mnemo::vector<"w", 4>;

/// Relative error 1e-7 against the differences; entries are compared relative to
/// max(|a|, |b|, 1e-6).
fd::tolerances tol() {
    fd::tolerances t;
    t.fd_rel = 1e-7;
    t.ref_rel = 1e-12;
    t.floor = 1e-6;
    return t;
}

/// Data for `sum(w * f(A x + b))`: A in [-0.5, 0.5], x in [-1, 1], w in [-1, 1], and b
/// = b_offset + b_scale * sin(...), which sets the range of the pre-activation.
data_for<A, x, b, w> vector_data(double b_offset, double b_scale, double phase = 0.0) {
    data_for<A, x, b, w> ds;
    ds.set(A, 0.3 + phase, 0.5).set(x, 1.1 + phase, 1.0).set(b, 2.3 + phase, b_scale, b_offset).set(w, 0.7, 1.0);
    return ds;
}

/// `f(z)` for the pre-activation z = A x + b: the loss sum(w * f(z)), differentiated with
/// respect to A, x, b and w.
template <class F>
void unary_case(const std::string& name, F op, data_for<A, x, b, w>& ds) {
    const auto f = mnemo::sum(mnemo::hadamard(w, op(A * x + b)));
    fd::check_gradients(name, f, ds, tol(), A, x, b, w);
}

constexpr auto z = A * x + b;

}  // namespace

TEST_CASE("first order: smooth unary functions of a vector, sum(w * f(A x + b))") {
    SUBCASE("square") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("square", [](auto e) { return mnemo::square(e); }, ds);
    }
    SUBCASE("ipow<3>") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("ipow<3>", [](auto e) { return mnemo::ipow<3>(e); }, ds);
    }
    SUBCASE("ipow<5>") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("ipow<5>", [](auto e) { return mnemo::ipow<5>(e); }, ds);
    }
    SUBCASE("exp") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("exp", [](auto e) { return mnemo::exp(e); }, ds);
    }
    SUBCASE("log") {
        auto ds = vector_data(3.0, 0.5);  // z in [1, 5]
        REQUIRE(fd::min_entry(z, ds.bindings()) > 0.5);
        unary_case("log", [](auto e) { return mnemo::log(e); }, ds);
    }
    SUBCASE("sqrt") {
        auto ds = vector_data(3.0, 0.5);
        REQUIRE(fd::min_entry(z, ds.bindings()) > 0.5);
        unary_case("sqrt", [](auto e) { return mnemo::sqrt(e); }, ds);
    }
    SUBCASE("tanh") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("tanh", [](auto e) { return mnemo::tanh(e); }, ds);
    }
    SUBCASE("sigmoid") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("sigmoid", [](auto e) { return mnemo::sigmoid(e); }, ds);
    }
    SUBCASE("silu") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("silu", [](auto e) { return mnemo::silu(e); }, ds);
    }
    SUBCASE("gelu") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("gelu", [](auto e) { return mnemo::gelu(e); }, ds);
    }
    SUBCASE("erf") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("erf", [](auto e) { return mnemo::erf(e); }, ds);
    }
    SUBCASE("gelu_exact") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("gelu_exact", [](auto e) { return mnemo::gelu_exact(e); }, ds);
    }
    SUBCASE("softplus") {
        auto ds = vector_data(0.0, 2.0);
        unary_case("softplus", [](auto e) { return mnemo::softplus(e); }, ds);
    }
    SUBCASE("unary minus") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("neg", [](auto e) { return mnemo::tanh(-e); }, ds);
    }
}

TEST_CASE("first order: piecewise unary functions away from their kinks") {
    // |z| >= margin: the stencil (steps <= 2e-3 in A, x, b) never crosses a kink.
    const double margin = 0.05;
    SUBCASE("abs") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("abs", [](auto e) { return mnemo::abs(e); }, ds);
    }
    SUBCASE("relu") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("relu", [](auto e) { return mnemo::relu(e); }, ds);
    }
    SUBCASE("sign (zero derivative in z)") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("sign", [](auto e) { return mnemo::sign(e); }, ds);
    }
    SUBCASE("step (zero derivative in z)") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("step", [](auto e) { return mnemo::step(e); }, ds);
    }
}

TEST_CASE("first order: huber(r, delta), scalar and elementwise delta") {
    constexpr auto delta = mnemo::scalar<"delta">;
    constexpr auto dv = mnemo::vector<"dv", 4>;
    const double margin = 0.05;
    SUBCASE("scalar delta") {
        data_for<A, x, b, w, delta> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.5).set(w, 0.7, 1.0).set_value(delta, 0.8);
        const auto bind = ds.bindings();
        // both regions are used, and no entry is near |r| = delta
        REQUIRE(fd::min_abs_entry(mnemo::abs(z) - delta, bind) > margin);
        REQUIRE(fd::min_entry(mnemo::abs(z) - delta, bind) < 0.0);
        REQUIRE(fd::min_entry(delta - mnemo::abs(z), bind) < 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::huber(z, delta)));
        fd::check_gradients("huber(r, scalar delta)", f, ds, tol(), A, x, b, w, delta);
    }
    SUBCASE("vector delta") {
        data_for<A, x, b, w, dv> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.5).set(w, 0.7, 1.0).set(dv, 0.4, 0.3, 0.8);
        const auto bind = ds.bindings();
        REQUIRE(fd::min_abs_entry(mnemo::abs(z) - dv, bind) > margin);
        REQUIRE(fd::min_entry(mnemo::abs(z) - dv, bind) < 0.0);
        REQUIRE(fd::min_entry(dv - mnemo::abs(z), bind) < 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::huber(z, dv)));
        fd::check_gradients("huber(r, vector delta)", f, ds, tol(), A, x, b, w, dv);
    }
}

TEST_CASE("first order: elementwise functions of matrices") {
    constexpr auto B = mnemo::matrix<"B", 3, 2>;
    constexpr auto C = mnemo::matrix<"C", 4, 2>;
    constexpr auto W = mnemo::matrix<"W", 4, 2>;
    data_for<A, B, C, W> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(C, 2.1, 0.5, 2.5).set(W, 0.6, 1.0);  // A B + C in [0.5, 4.5]
    const auto Z = A * B + C;
    REQUIRE(fd::min_entry(Z, ds.bindings()) > 0.5);
    SUBCASE("log, sqrt, tanh, exp, softplus, gelu, gelu_exact on a matrix") {
        const auto f = mnemo::sum(mnemo::hadamard(
            W, mnemo::log(Z) + mnemo::hadamard(mnemo::sqrt(Z), mnemo::tanh(Z - mnemo::c<2>)) +
                   mnemo::exp(mnemo::c<-1, 2> * Z) + mnemo::softplus(mnemo::c<2> - Z) +
                   mnemo::gelu(Z - mnemo::c<3, 2>) + mnemo::gelu_exact(mnemo::c<5, 2> - Z)));
        fd::check_gradients("matrix elementwise", f, ds, tol(), A, B, C, W);
    }
}

TEST_CASE("first order: functions of scalar symbols") {
    constexpr auto s = mnemo::scalar<"s">;
    constexpr auto t = mnemo::scalar<"t">;
    data_for<s, t> ds;
    ds.set_value(s, 0.7).set_value(t, 1.9);
    using namespace mnemo;
    SUBCASE("smooth") {
        const auto f = tanh(s * t) + log(t) * sigmoid(s) + sqrt(t) / (s - t) + exp(c<1, 2> * s) +
                       softplus(s - t) + silu(t - s) + gelu(s) + gelu_exact(t - s) + ipow<3>(s) * square(t) - t / s;
        fd::check_gradients("scalar chain (smooth)", f, ds, tol(), s, t);
    }
    SUBCASE("piecewise") {
        const auto f = abs(s - t) * relu(t) + sign(s) * s + step(t - s) * t + huber(s, c<1, 2>) + huber(t, s) +
                       relu(s - t);
        fd::check_gradients("scalar chain (piecewise)", f, ds, tol(), s, t);
    }
}
