// Second derivatives (Hessian-vector products and mixed derivatives, see
// test_grad_second_order.cpp for the method) of arithmetic (+ - * / and unary minus),
// scalar broadcasting and hadamard. Products, transposes, outer, dot, reductions and
// scalar symbols: test_grad_second_order_products.cpp. (Split for compile time.)
#include <doctest/doctest.h>

#include "support/fd.hpp"

namespace {

using namespace mnemo_test;
using fd::data_for;

constexpr auto A = mnemo::matrix<"A", 4, 3>;
constexpr auto x = mnemo::vector<"x", 3>;
constexpr auto b = mnemo::vector<"b", 4>;
constexpr auto w = mnemo::vector<"w", 4>;
constexpr auto y = mnemo::vector<"y", 4>;
constexpr auto s = mnemo::scalar<"s">;
constexpr auto r = mnemo::scalar<"r">;        // direction for s
constexpr auto U = mnemo::matrix<"U", 4, 3>;  // direction for A
constexpr auto B = mnemo::matrix<"B", 3, 2>;
constexpr auto C = mnemo::matrix<"C", 4, 2>;
constexpr auto W = mnemo::matrix<"W", 4, 2>;

constexpr auto z = A * x + b;

fd::tolerances tol() {
    fd::tolerances t;
    t.fd_rel = 1e-7;
    t.ref_rel = 1e-12;
    t.floor = 1e-6;
    return t;
}

/// phi = <grad_A f, U>: its gradients are H U (in A) and mixed second derivatives.
template <class F>
constexpr auto contract_A(F f) {
    return mnemo::sum(mnemo::hadamard(mnemo::grad(f, A), U));
}

}  // namespace

TEST_CASE("second order: + - * / of two vectors") {
    auto ds_for = [](double b_offset, double y_offset) {
        data_for<A, x, b, w, y, U> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0, b_offset).set(w, 0.7, 1.0).set(y, 1.7, 0.5, y_offset);
        ds.set(U, 1.3, 1.0);
        return ds;
    };
    SUBCASE("+ and -") {
        auto ds = ds_for(0.0, 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z + y))) + mnemo::sum(mnemo::sigmoid(y - z));
        fd::check_gradients("vector + - <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, w, y);
    }
    SUBCASE("*") {
        auto ds = ds_for(0.0, 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z * y))) + mnemo::sum(w * y * z * z);
        fd::check_gradients("vector * <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, w, y);
    }
    SUBCASE("/") {
        auto ds = ds_for(3.0, 2.0);
        REQUIRE(fd::min_entry(z, ds.bindings()) > 1.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, z / y)) + mnemo::sum(y / z) + mnemo::sum(mnemo::tanh(z / y));
        fd::check_gradients("vector / <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, w, y);
    }
}

TEST_CASE("second order: scalar broadcasting in + - * /") {
    // phi = <grad_A f, U> + r grad_s f: a direction (U, r) in the joint (A, s) space.
    auto ds_for = [](double offset) {
        data_for<A, x, b, w, s, B, C, W, U, r> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0, offset).set(w, 0.7, 1.0).set_value(s, 0.8);
        ds.set(B, 1.2, 1.0).set(C, 2.1, 0.5, offset).set(W, 0.6, 1.0).set(U, 1.3, 1.0).set_value(r, -0.7);
        return ds;
    };
    const auto Z = A * B + C;
    auto phi_of = [](auto f) { return contract_A(f) + r * mnemo::grad(f, s); };
    SUBCASE("+ and -") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s + z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z - s))) + mnemo::sum(mnemo::sigmoid(s - z));
        fd::check_gradients("broadcast + -", phi_of(f), ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("*") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s * z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z * s))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::sum(z) * z));
        fd::check_gradients("broadcast *", phi_of(f), ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("/") {
        auto ds = ds_for(3.0);
        const auto bind = ds.bindings();
        REQUIRE(fd::min_entry(z, bind) > 1.0);
        REQUIRE(fd::min_entry(Z, bind) > 1.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, s / z)) + mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z / s))) +
                       mnemo::sum(mnemo::hadamard(w, z / mnemo::sum(z)));
        fd::check_gradients("broadcast /", phi_of(f), ds, tol(), A, x, b, w, s, B, C, W);
    }
}

TEST_CASE("second order: hadamard of matrices, with a scalar, and unary minus") {
    data_for<A, B, C, W, s, U> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(C, 2.1, 1.0).set(W, 0.6, 1.0).set_value(s, -0.6).set(U, 1.3, 1.0);
    const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(mnemo::hadamard(A * B, C)))) +
                   mnemo::sum(mnemo::hadamard(mnemo::hadamard(A * B, s), mnemo::hadamard(W, A * B))) +
                   mnemo::sum(mnemo::hadamard(s, mnemo::sigmoid(-(A * B) + C)));
    fd::check_gradients("hadamard, neg <grad_A f, U>", contract_A(f), ds, tol(), A, B, C, W, s);
}
