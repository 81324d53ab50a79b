// Second derivatives of every operation. With g = grad(f, X) and a direction U of X's
// shape, phi = sum(g * U) = <grad f, U>; then
//     grad(phi, X) = H U          (a Hessian-vector product),
//     grad(phi, Y) = d/dY <grad_X f, U>  (a mixed second derivative), Y another symbol.
// Both are evaluated by a plan and compared with central differences of phi, i.e. of the
// EXACT gradient g contracted with U (evaluated by the plan, and by the independent
// reference evaluator), and with the reference evaluator's value of the same expressions.
// See tests/support/fd.hpp for the harness and the error measure.
//
// This file: the elementwise functions (unary, huber) and the Titans-like mixed
// derivative. test_grad_second_order_linear.cpp: arithmetic, broadcasting, products,
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
constexpr auto U = mnemo::matrix<"U", 4, 3>;  // direction for X = A
constexpr auto u = mnemo::vector<"u", 3>;     // direction for X = x

fd::tolerances tol() {
    fd::tolerances t;
    t.fd_rel = 1e-7;
    t.ref_rel = 1e-12;
    t.floor = 1e-6;
    return t;
}

constexpr auto z = A * x + b;

using unary_data = data_for<A, x, b, w, U, u>;

unary_data vector_data(double b_offset, double b_scale) {
    unary_data ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, b_scale, b_offset).set(w, 0.7, 1.0);
    ds.set(U, 1.3, 1.0).set(u, 2.7, 1.0);
    return ds;
}

/// f = sum(w * op(A x + b)). Second derivatives through grad(f, A) (Hessian-vector product
/// in A, mixed in x, b, w) and through grad(f, x) (Hessian-vector product in x, mixed in A).
template <class F>
void unary_case(const std::string& name, F op, unary_data& ds) {
    const auto f = mnemo::sum(mnemo::hadamard(w, op(z)));
    const auto phi_A = mnemo::sum(mnemo::hadamard(mnemo::grad(f, A), U));
    fd::check_gradients(name + " <grad_A f, U>", phi_A, ds, tol(), A, x, b, w);
    const auto phi_x = mnemo::sum(mnemo::hadamard(mnemo::grad(f, x), u));
    fd::check_gradients(name + " <grad_x f, u>", phi_x, ds, tol(), x, A);
}

}  // namespace

TEST_CASE("second order: smooth unary functions, f = sum(w * op(A x + b))") {
    SUBCASE("square") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("square", [](auto e) { return mnemo::square(e); }, ds);
    }
    SUBCASE("ipow<4>") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("ipow<4>", [](auto e) { return mnemo::ipow<4>(e); }, ds);
    }
    SUBCASE("exp") {
        auto ds = vector_data(0.0, 1.0);
        unary_case("exp", [](auto e) { return mnemo::exp(e); }, ds);
    }
    SUBCASE("log") {
        auto ds = vector_data(3.0, 0.5);
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
        unary_case("neg", [](auto e) { return mnemo::sigmoid(-e); }, ds);
    }
}

TEST_CASE("second order: piecewise functions away from their kinks") {
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
    SUBCASE("sign, step (products with a smooth factor)") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("sign*z^2, step*z^3",
                   [](auto e) { return mnemo::hadamard(mnemo::sign(e), mnemo::square(e)) +
                                       mnemo::hadamard(mnemo::step(e), mnemo::ipow<3>(e)); },
                   ds);
    }
    SUBCASE("abs * relu (products of piecewise functions)") {
        auto ds = vector_data(0.0, 1.5);
        REQUIRE(fd::min_abs_entry(z, ds.bindings()) > margin);
        unary_case("abs*relu", [](auto e) { return mnemo::hadamard(mnemo::abs(e), mnemo::relu(e)); }, ds);
    }
}

TEST_CASE("second order: huber(r, delta)") {
    constexpr auto delta = mnemo::scalar<"delta">;
    constexpr auto dv = mnemo::vector<"dv", 4>;
    const double margin = 0.05;
    SUBCASE("scalar delta") {
        data_for<A, x, b, w, U, delta> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.5).set(w, 0.7, 1.0).set(U, 1.3, 1.0).set_value(delta, 0.8);
        const auto bind = ds.bindings();
        REQUIRE(fd::min_abs_entry(mnemo::abs(z) - delta, bind) > margin);
        REQUIRE(fd::min_entry(mnemo::abs(z) - delta, bind) < 0.0);
        REQUIRE(fd::min_entry(delta - mnemo::abs(z), bind) < 0.0);
        REQUIRE(fd::min_abs_entry(z, bind) > margin);
        // f = sum(w * huber(z, delta)^2): huber itself is piecewise quadratic/linear.
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::square(mnemo::huber(z, delta)))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::huber(z, delta)));
        const auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(f, A), U));
        fd::check_gradients("huber(r, scalar delta) <grad_A f, U>", phi, ds, tol(), A, x, b, w, delta);
        const auto phi_d = mnemo::grad(f, delta);  // scalar: its own "contraction"
        fd::check_gradients("huber(r, scalar delta) d/ddelta f", phi_d, ds, tol(), delta, A, b);
    }
    SUBCASE("vector delta") {
        data_for<A, x, b, w, U, dv> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.5).set(w, 0.7, 1.0).set(U, 1.3, 1.0).set(dv, 0.4, 0.3, 0.8);
        const auto bind = ds.bindings();
        REQUIRE(fd::min_abs_entry(mnemo::abs(z) - dv, bind) > margin);
        REQUIRE(fd::min_entry(mnemo::abs(z) - dv, bind) < 0.0);
        REQUIRE(fd::min_entry(dv - mnemo::abs(z), bind) < 0.0);
        REQUIRE(fd::min_abs_entry(z, bind) > margin);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::square(mnemo::huber(z, dv))));
        const auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(f, A), U));
        fd::check_gradients("huber(r, vector delta) <grad_A f, U>", phi, ds, tol(), A, x, b, w, dv);
    }
}

TEST_CASE("second order: l2_normalize") {
    constexpr auto y = mnemo::vector<"y", 4>;
    data_for<A, x, b, w, U, y> ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0).set(w, 0.7, 1.0).set(U, 1.3, 1.0).set(y, 1.7, 1.0);
    const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(mnemo::l2_normalize(z)))) +
                   mnemo::dot(mnemo::l2_normalize(z), y);
    const auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(f, A), U));
    fd::check_gradients("l2_normalize <grad_A f, U>", phi, ds, tol(), A, x, b, w, y);
}

TEST_CASE("second order: Titans-like mixed derivative through the inner gradient") {
    // f = sum(square(M (K x) - V x)); g = grad(f, M) = 2 (M K x - V x) (K x)^T.
    constexpr std::size_t d = 5;
    constexpr auto M = mnemo::matrix<"M", d, d>;
    constexpr auto K = mnemo::matrix<"K", d, d>;
    constexpr auto V = mnemo::matrix<"V", d, d>;
    constexpr auto D = mnemo::matrix<"D", d, d>;  // direction
    constexpr auto xt = mnemo::vector<"xt", d>;
    data_for<M, K, V, D, xt> ds;
    ds.set(M, 0.5, 0.1).set(K, 1.5, 0.3).set(V, 2.5, 0.3).set(D, 3.5, 1.0).set(xt, 4.5, 1.0);
    const auto f = mnemo::sum(mnemo::square(M * (K * xt) - V * xt));
    const auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(f, M), D));
    fd::check_gradients("titans <grad_M f, D>", phi, ds, tol(), M, K, V, xt);

    // One inner step and an outer loss through it (the seed problem's structure, smooth).
    constexpr auto eta = mnemo::scalar<"eta">;
    constexpr auto Q = mnemo::matrix<"Q", d, d>;
    data_for<M, K, V, Q, xt, eta> ds2;
    ds2.set(M, 0.5, 0.1).set(K, 1.5, 0.3).set(V, 2.5, 0.3).set(Q, 3.5, 0.3).set(xt, 4.5, 1.0).set_value(eta, 0.1);
    const auto M1 = M - eta * mnemo::grad(f, M);
    const auto outer_loss = mnemo::sum(mnemo::tanh(M1 * (Q * xt) - xt));
    fd::check_gradients("titans outer loss through one step", outer_loss, ds2, tol(), M, K, V, Q, eta);
}
