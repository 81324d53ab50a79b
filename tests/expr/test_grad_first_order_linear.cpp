// First derivatives of every operation: `grad(f, X)` evaluated by a plan, against central
// finite differences of f (computed with the plan and with the independent reference
// evaluator), and against the reference evaluator's value of the same gradient
// expression. See tests/support/fd.hpp for the harness and the error measure.
//
// This file: arithmetic (+ - * / and unary minus), scalar broadcasting, hadamard, matrix
// products, transposes on both sides of products, outer, dot, sum / mean / squared_norm,
// l2_normalize. The elementwise functions are in test_grad_first_order.cpp.
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

constexpr auto z = A * x + b;
constexpr auto y = mnemo::vector<"y", 4>;
constexpr auto s = mnemo::scalar<"s">;
constexpr auto B = mnemo::matrix<"B", 3, 2>;
constexpr auto C = mnemo::matrix<"C", 4, 2>;
constexpr auto W = mnemo::matrix<"W", 4, 2>;
constexpr auto y2 = mnemo::vector<"y2", 2>;
}  // namespace

TEST_CASE("first order: + - * / of two vectors") {
    auto ds_for = [](double b_offset, double y_offset) {
        data_for<A, x, b, w, y> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0, b_offset).set(w, 0.7, 1.0).set(y, 1.7, 0.5, y_offset);
        return ds;
    };
    SUBCASE("+") {
        auto ds = ds_for(0.0, 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z + y)));
        fd::check_gradients("vector +", f, ds, tol(), A, x, b, w, y);
    }
    SUBCASE("-") {
        auto ds = ds_for(0.0, 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z - y)));
        fd::check_gradients("vector -", f, ds, tol(), A, x, b, w, y);
    }
    SUBCASE("* (elementwise for vectors)") {
        auto ds = ds_for(0.0, 0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z * y))) + mnemo::sum(w * y * z);
        fd::check_gradients("vector *", f, ds, tol(), A, x, b, w, y);
    }
    SUBCASE("/") {
        auto ds = ds_for(3.0, 2.0);  // z in [1.5, 4.5], y in [1.5, 2.5]
        REQUIRE(fd::min_entry(z, ds.bindings()) > 1.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(z / y))) + mnemo::sum(y / z);
        fd::check_gradients("vector /", f, ds, tol(), A, x, b, w, y);
    }
}

TEST_CASE("first order: scalar broadcasting in + - * / (scalar left and right, vector and matrix)") {
    using namespace mnemo::literals;
    auto ds_for = [](double offset) {
        data_for<A, x, b, w, s, B, C, W> ds;
        ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0, offset).set(w, 0.7, 1.0).set_value(s, 0.8);
        ds.set(B, 1.2, 1.0).set(C, 2.1, 0.5, offset).set(W, 0.6, 1.0);
        return ds;
    };
    const auto Z = A * B + C;
    SUBCASE("+") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s + z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z + s))) + mnemo::sum(mnemo::tanh(mnemo::c<1, 2> + z));
        fd::check_gradients("broadcast +", f, ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("-") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s - z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z - s))) + mnemo::sum(mnemo::tanh(z - 1_c));
        fd::check_gradients("broadcast -", f, ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("*") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s * z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z * s))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::tanh((1_c - s) * z))) +
                       mnemo::sum(mnemo::hadamard(w, mnemo::sum(z) * z));  // a scalar *expression* times a vector
        fd::check_gradients("broadcast *", f, ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("/") {
        auto ds = ds_for(3.0);  // z and Z positive
        const auto bind = ds.bindings();
        REQUIRE(fd::min_entry(z, bind) > 1.0);
        REQUIRE(fd::min_entry(Z, bind) > 1.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(s / z))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z / s))) + mnemo::sum(z / mnemo::c<3>) +
                       mnemo::sum(mnemo::hadamard(w, z / mnemo::sum(z)));
        fd::check_gradients("broadcast /", f, ds, tol(), A, x, b, w, s, B, C, W);
    }
    SUBCASE("fill<S>(s) explicitly") {
        auto ds = ds_for(0.0);
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(mnemo::hadamard(mnemo::fill<mnemo::shape<4>>(s), z)))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::fill<mnemo::shape<4, 2>>(mnemo::sum(z))));
        fd::check_gradients("fill", f, ds, tol(), A, x, b, w, s, W);
    }
}

TEST_CASE("first order: hadamard of matrices, with a scalar, and unary minus") {
    data_for<A, B, C, W, s> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(C, 2.1, 1.0).set(W, 0.6, 1.0).set_value(s, -0.6);
    const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(mnemo::hadamard(A * B, C)))) +
                   mnemo::sum(mnemo::hadamard(mnemo::hadamard(A * B, s), W)) +
                   mnemo::sum(mnemo::hadamard(s, mnemo::sigmoid(-(A * B) + C)));
    fd::check_gradients("hadamard (matrices, scalar), neg", f, ds, tol(), A, B, C, W, s);
}

TEST_CASE("first order: matrix products") {
    constexpr auto G = mnemo::matrix<"G", 2, 2>;
    data_for<A, B, G, W, w, y2, x> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(G, 2.2, 1.0).set(W, 0.6, 1.0).set(w, 0.7, 1.0).set(y2, 1.9, 1.0).set(x, 1.1, 1.0);
    SUBCASE("matrix-matrix") {
        const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(A * B)));
        fd::check_gradients("matmul (4x3)(3x2)", f, ds, tol(), A, B, W);
    }
    SUBCASE("chains (A B) y2 and (A B) G") {
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh((A * B) * y2))) +
                       mnemo::sum(mnemo::hadamard(W, mnemo::sigmoid((A * B) * G)));
        fd::check_gradients("matmul chains", f, ds, tol(), A, B, G, W, w, y2);
    }
    SUBCASE("matrix-vector of a computed matrix") {
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(mnemo::tanh(A) * x)));
        fd::check_gradients("matvec of tanh(A)", f, ds, tol(), A, x, w);
    }
}

TEST_CASE("first order: transposes on both sides of products") {
    constexpr auto D = mnemo::matrix<"D", 4, 2>;
    constexpr auto E = mnemo::matrix<"E", 2, 3>;
    constexpr auto F = mnemo::matrix<"F", 2, 4>;
    constexpr auto V = mnemo::matrix<"V", 3, 2>;
    constexpr auto V34 = mnemo::matrix<"V34", 3, 4>;
    constexpr auto u = mnemo::vector<"u", 4>;
    constexpr auto r3 = mnemo::vector<"r3", 3>;
    data_for<A, B, D, E, F, V, V34, W, u, r3, y2> ds;
    ds.set(A, 0.3, 0.5).set(B, 1.2, 1.0).set(D, 2.2, 1.0).set(E, 0.4, 1.0).set(F, 1.4, 1.0);
    ds.set(V, 0.6, 1.0).set(V34, 2.6, 1.0).set(W, 1.6, 1.0).set(u, 0.9, 1.0).set(r3, 2.9, 1.0).set(y2, 1.9, 1.0);
    SUBCASE("A^T D") {
        const auto f = mnemo::sum(mnemo::hadamard(V, mnemo::tanh(mnemo::transpose(A) * D)));
        fd::check_gradients("A^T D", f, ds, tol(), A, D, V);
    }
    SUBCASE("A E^T") {
        const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(A * mnemo::transpose(E))));
        fd::check_gradients("A E^T", f, ds, tol(), A, E, W);
    }
    SUBCASE("A^T F^T") {
        const auto f = mnemo::sum(mnemo::hadamard(V, mnemo::tanh(mnemo::transpose(A) * mnemo::transpose(F))));
        fd::check_gradients("A^T F^T", f, ds, tol(), A, F, V);
    }
    SUBCASE("A^T u") {
        const auto f = mnemo::sum(mnemo::hadamard(r3, mnemo::tanh(mnemo::transpose(A) * u)));
        fd::check_gradients("A^T u", f, ds, tol(), A, u, r3);
    }
    SUBCASE("(A B)^T u") {
        const auto f = mnemo::sum(mnemo::hadamard(y2, mnemo::tanh(mnemo::transpose(A * B) * u)));
        fd::check_gradients("(A B)^T u", f, ds, tol(), A, B, u, y2);
    }
    SUBCASE("elementwise use of A^T") {
        const auto f = mnemo::sum(mnemo::hadamard(V34, mnemo::tanh(mnemo::transpose(A)))) +
                       mnemo::sum(mnemo::hadamard(E, mnemo::transpose(mnemo::transpose(A) * D)));
        fd::check_gradients("A^T elementwise", f, ds, tol(), A, D, V34, E);
    }
}

TEST_CASE("first order: outer and dot") {
    constexpr auto q2 = mnemo::vector<"q2", 2>;
    constexpr auto Wt = mnemo::matrix<"Wt", 2, 4>;
    data_for<A, x, b, w, y, y2, q2, W, Wt> ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0).set(w, 0.7, 1.0).set(y, 1.7, 1.0);
    ds.set(y2, 1.9, 1.0).set(q2, 0.2, 1.0).set(W, 0.6, 1.0).set(Wt, 2.6, 1.0);
    SUBCASE("outer(z, y2)") {
        const auto f = mnemo::sum(mnemo::hadamard(W, mnemo::tanh(mnemo::outer(z, y2))));
        fd::check_gradients("outer", f, ds, tol(), A, x, b, y2, W);
    }
    SUBCASE("outer(z, y2) q2 and outer^T") {
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::tanh(mnemo::outer(z, y2) * q2))) +
                       mnemo::sum(mnemo::hadamard(Wt, mnemo::tanh(mnemo::transpose(mnemo::outer(z, y2)))));
        fd::check_gradients("outer times vector, outer^T", f, ds, tol(), A, x, b, w, y2, q2, Wt);
    }
    SUBCASE("dot") {
        const auto f = mnemo::tanh(mnemo::dot(z, y)) + mnemo::dot(z, z) * mnemo::dot(w, y);
        fd::check_gradients("dot", f, ds, tol(), A, x, b, w, y);
    }
}

TEST_CASE("first order: sum, mean, squared_norm, l2_normalize") {
    data_for<A, x, b, w, y, B, C, W> ds;
    ds.set(A, 0.3, 0.5).set(x, 1.1, 1.0).set(b, 2.3, 1.0).set(w, 0.7, 1.0).set(y, 1.7, 1.0);
    ds.set(B, 1.2, 1.0).set(C, 2.1, 1.0).set(W, 0.6, 1.0);
    const auto Z = A * B + C;
    SUBCASE("sum") {
        const auto f = mnemo::square(mnemo::sum(mnemo::tanh(z))) + mnemo::sum(mnemo::hadamard(W, mnemo::tanh(Z)));
        fd::check_gradients("sum", f, ds, tol(), A, x, b, B, C, W);
    }
    SUBCASE("linear terms: gradients that are a symbol or a constant") {
        // d/dC sum(W * (A B + C)) = W and d/dy dot(y, c) = c are plain leaves. A plan output
        // that is a leaf must still be its value (and the leaf's other users unaffected).
        const auto f = mnemo::sum(mnemo::hadamard(W, Z)) + mnemo::dot(y, mnemo::fill<mnemo::shape<4>>(mnemo::c<3, 2>)) +
                       mnemo::square(mnemo::sum(z));
        fd::check_gradients("linear terms", f, ds, tol(), A, x, b, y, B, C, W);
    }
    SUBCASE("mean") {
        const auto f = mnemo::tanh(mnemo::mean(mnemo::hadamard(W, Z))) + mnemo::mean(mnemo::square(z));
        fd::check_gradients("mean", f, ds, tol(), A, x, b, B, C, W);
    }
    SUBCASE("squared_norm") {
        const auto f = mnemo::squared_norm(mnemo::tanh(Z)) + mnemo::squared_norm(z);
        fd::check_gradients("squared_norm", f, ds, tol(), A, x, b, B, C);
    }
    SUBCASE("l2_normalize") {
        const auto f = mnemo::sum(mnemo::hadamard(w, mnemo::l2_normalize(z))) + mnemo::dot(mnemo::l2_normalize(z), y);
        fd::check_gradients("l2_normalize", f, ds, tol(), A, x, b, w, y);
    }
}
