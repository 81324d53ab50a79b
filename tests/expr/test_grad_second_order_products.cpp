// Second derivatives (Hessian-vector products and mixed derivatives, see
// test_grad_second_order.cpp for the method) of matrix products, transposes on both
// sides, outer, dot, sum / mean / squared_norm, and of functions of scalar symbols.
// Arithmetic and broadcasting: test_grad_second_order_linear.cpp. (Split for compile
// time.)
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
constexpr auto U = mnemo::matrix<"U", 4, 3>;  // direction for A
constexpr auto B = mnemo::matrix<"B", 3, 2>;
constexpr auto C = mnemo::matrix<"C", 4, 2>;
constexpr auto W = mnemo::matrix<"W", 4, 2>;
constexpr auto y2 = mnemo::vector<"y2", 2>;

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

TEST_CASE("second order: matrix products and transposes") {
    constexpr auto G = mnemo::matrix<"G", 2, 2>;
    constexpr auto D = mnemo::matrix<"D", 4, 2>;
    constexpr auto E = mnemo::matrix<"E", 2, 3>;
    constexpr auto F = mnemo::matrix<"F", 2, 4>;
    constexpr auto V = mnemo::matrix<"V", 3, 2>;
    constexpr auto u = mnemo::vector<"u", 4>;
    constexpr auto r3 = mnemo::vector<"r3", 3>;
    data_for<A, B, G, W, w, y2, D, E, F, V, u, r3, U> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(G, 2.2, 1.0).set(W, 0.6, 1.0).set(w, 0.7, 1.0).set(y2, 1.9, 1.0);
    ds.set(D, 2.2, 1.0).set(E, 0.4, 1.0).set(F, 1.4, 1.0).set(V, 0.6, 1.0).set(u, 0.9, 1.0).set(r3, 2.9, 1.0);
    ds.set(U, 1.3, 1.0);
    SUBCASE("matrix-matrix and chains") {
        const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(A * B))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::tanh((A * B) * y2))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::sigmoid((A * B) * G)));
        fd::check_gradients("matmul <grad_A f, U>", contract_A(f), ds, tol(), A, B, G, W, w, y2);
    }
    SUBCASE("A^T D, A E^T, A^T F^T") {
        const auto f = mnemo::sum(mnemo::hadamard(V, mnemo::tanh(mnemo::transpose(A) * D))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(A * mnemo::transpose(E)))) +
                       mnemo::sum(mnemo::hadamard(V, mnemo::sigmoid(mnemo::transpose(A) * mnemo::transpose(F))));
        fd::check_gradients("transposes in products <grad_A f, U>", contract_A(f), ds, tol(), A, D, E, F, V, W);
    }
    SUBCASE("A^T u, (A B)^T u, elementwise A^T") {
        const auto f = mnemo::sum(mnemo::hadamard(r3, mnemo::tanh(mnemo::transpose(A) * u))) +
                       mnemo::sum(mnemo::hadamard(y2, mnemo::tanh(mnemo::transpose(A * B) * u))) +
                       mnemo::sum(mnemo::square(mnemo::transpose(A))) * mnemo::sum(mnemo::transpose(A));
        fd::check_gradients("transposed products with vectors <grad_A f, U>", contract_A(f), ds, tol(), A, B, u, r3, y2);
    }
}

TEST_CASE("second order: outer and dot") {
    constexpr auto q2 = mnemo::vector<"q2", 2>;
    constexpr auto Wt = mnemo::matrix<"Wt", 2, 4>;
    data_for<A, x, b, w, y, y2, q2, W, Wt, U> ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0).set(w, 0.7, 1.0).set(y, 1.7, 1.0);
    ds.set(y2, 1.9, 1.0).set(q2, 0.2, 1.0).set(W, 0.6, 1.0).set(Wt, 2.6, 1.0).set(U, 1.3, 1.0);
    SUBCASE("outer") {
        const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(mnemo::outer(z, y2)))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::tanh(mnemo::outer(z, y2) * q2))) +
                       mnemo::sum(mnemo::hadamard(Wt, mnemo::tanh(mnemo::transpose(mnemo::outer(z, y2)))));
        fd::check_gradients("outer <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, w, y2, q2, W, Wt);
    }
    SUBCASE("dot") {
        const auto f = mnemo::tanh(mnemo::dot(z, y)) + mnemo::dot(z, z) * mnemo::dot(w, z);
        fd::check_gradients("dot <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, w, y);
    }
}

TEST_CASE("second order: sum, mean, squared_norm") {
    data_for<A, x, b, B, C, W, U> ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0).set(B, 1.2, 1.0).set(C, 2.1, 1.0).set(W, 0.6, 1.0);
    ds.set(U, 1.3, 1.0);
    const auto Z = A * B + C;
    const auto f = mnemo::square(mnemo::sum(mnemo::tanh(z))) + mnemo::tanh(mnemo::mean(mnemo::hadamard(W, Z))) +
                   mnemo::mean(mnemo::ipow<3>(z)) + mnemo::squared_norm(mnemo::tanh(Z)) +
                   mnemo::squared_norm(z) * mnemo::mean(z);
    fd::check_gradients("reductions <grad_A f, U>", contract_A(f), ds, tol(), A, x, b, B, C, W);
}

TEST_CASE("second order: functions of scalar symbols") {
    constexpr auto t = mnemo::scalar<"t">;
    data_for<s, t> ds;
    ds.set_value(s, 0.7).set_value(t, 1.9);
    using namespace mnemo;
    const auto f = tanh(s * t) + log(t) * sigmoid(s) + sqrt(t) / (s - t) + exp(c<1, 2> * s) + softplus(s - t) +
                   silu(t - s) + gelu(s) + ipow<3>(s) * square(t) - t / s + abs(s - t) * relu(t) * t +
                   huber(t, s) * s + huber(s, c<1>) * t;
    fd::check_gradients("scalar chain d/ds f", grad(f, s), ds, tol(), s, t);
    fd::check_gradients("scalar chain d/dt f", grad(f, t), ds, tol(), s, t);
}
