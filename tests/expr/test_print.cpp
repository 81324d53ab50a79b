// mnemo::to_string: expressions as readable math. The expected strings are derived by hand
// from the rules of include/mnemo/expr/print.hpp:
//   `@` matrix product, `*` elementwise product (scalar first), `/`, `+`, `-`, unary `-`,
//   `^T` transpose, `^N` integer power, `f(...)` for functions, `outer(u, v)`, `sum(a)`,
//   `fill(s)`, "0" for a zero tensor, constants as `N` or `N/D`.
//   Precedence: 1 `+ -`, 2 `* / @`, 3 unary `-`, 4 postfix `^T ^N`, 5 atoms and calls;
//   a negative or fractional constant has precedence 2. Binary operators associate to the
//   left: the right operand of `-`, `*`, `/`, `@` is parenthesised at equal precedence,
//   the right operand of `+` is not.
// The expressions are the simplified ones the builders return (see test_simplify.cpp).
#include <doctest/doctest.h>

#include <string>

#include <mnemo/expr.hpp>

namespace {

using namespace mnemo;

constexpr auto M = matrix<"M", 3, 4>;
constexpr auto K = matrix<"K", 4, 4>;
constexpr auto V = matrix<"V", 3, 4>;
constexpr auto A = matrix<"A", 3, 4>;
constexpr auto B = matrix<"B", 4, 5>;
constexpr auto C = matrix<"C", 5, 2>;
constexpr auto x = vector<"x", 4>;
constexpr auto u = vector<"u", 3>;
constexpr auto v = vector<"v", 4>;
constexpr auto y = vector<"y", 3>;
constexpr auto z = vector<"z", 3>;
constexpr auto x5 = vector<"x5", 5>;
constexpr auto s = scalar<"s">;
constexpr auto t = scalar<"t">;

}  // namespace

TEST_CASE("to_string: leaves") {
    CHECK(to_string(x) == "x");
    CHECK(to_string(matrix<"W_K", 2, 2>) == "W_K");
    CHECK(to_string(scalar<"theta">) == "theta");
    CHECK(to_string(c<3>) == "3");
    CHECK(to_string(c<0>) == "0");
    CHECK(to_string(c<-2>) == "-2");
    CHECK(to_string(c<5, 6>) == "5/6");
    CHECK(to_string(c<2, -4>) == "-1/2");  // normalised
    CHECK(to_string(zero_tensor<shape<3, 4>>{}) == "0");
    CHECK(to_string(x - x) == "0");
}

TEST_CASE("to_string: the doc example") {
    CHECK(to_string(sum(square(M * (K * x) - V * x))) == "sum((M @ (K @ x) - V @ x)^2)");
}

TEST_CASE("to_string: matrix products and transposes") {
    CHECK(to_string(A * B) == "A @ B");
    CHECK(to_string((A * B) * x5) == "A @ (B @ x5)");  // re-associated onto the vector
    CHECK(to_string((A * B) * C) == "A @ B @ C");
    CHECK(to_string(A * (B * C)) == "A @ (B @ C)");
    CHECK(to_string(transpose(A)) == "A^T");
    CHECK(to_string(transpose(A) * u) == "A^T @ u");
    CHECK(to_string(transpose(A * B)) == "(A @ B)^T");
    CHECK(to_string(transpose(A * B) * u) == "(A @ B)^T @ u");
    CHECK(to_string(transpose(transpose(A))) == "A");
    CHECK(to_string(transpose(-A)) == "(-A)^T");
    CHECK(to_string((-A) * x) == "-A @ x");
    CHECK(to_string(A * (-x)) == "A @ -x");
    CHECK(to_string(outer(u, x)) == "outer(u, x)");
    CHECK(to_string(transpose(outer(u, x))) == "outer(x, u)");
    CHECK(to_string(outer(u, x) * v) == "sum(x * v) * u");
}

TEST_CASE("to_string: additive operators and their associativity") {
    CHECK(to_string(u + y) == "u + y");
    CHECK(to_string((u + y) + z) == "u + y + z");
    CHECK(to_string(u + (y + z)) == "u + y + z");
    CHECK(to_string((u - y) - z) == "u - y - z");
    CHECK(to_string(u - (y - z)) == "u - (y - z)");
    CHECK(to_string(u - (y + z)) == "u - (y + z)");
    CHECK(to_string(u + (y - z)) == "u + y - z");
    CHECK(to_string(u - A * x) == "u - A @ x");
    CHECK(to_string(u - (-y)) == "u - -y");
    CHECK(to_string(u + s) == "u + s");
    CHECK(to_string(u - c<-3>) == "u - -3");
}

TEST_CASE("to_string: multiplicative operators") {
    CHECK(to_string(hadamard(u, y)) == "u * y");
    CHECK(to_string(u * y) == "u * y");
    CHECK(to_string(s * u) == "s * u");
    CHECK(to_string(u * s) == "s * u");  // the scalar goes first
    CHECK(to_string(c<1, 2> * u) == "1/2 * u");
    CHECK(to_string(u / c<2>) == "1/2 * u");  // division by a constant is a product
    CHECK(to_string(u * c<-3>) == "-3 * u");
    CHECK(to_string(s * c<1, 2>) == "s * (1/2)");
    CHECK(to_string(u / y) == "u / y");
    CHECK(to_string(u / (y * z)) == "u / (y * z)");
    CHECK(to_string((u / y) * z) == "u / y * z");
    CHECK(to_string(u * (y / z)) == "u * (y / z)");
    CHECK(to_string((u * y) * z) == "u * y * z");
    CHECK(to_string(u * (y * z)) == "u * (y * z)");
    CHECK(to_string((u + y) * z) == "(u + y) * z");
    CHECK(to_string(s * (u - y)) == "s * (u - y)");
    CHECK(to_string(hadamard(A * x, y)) == "A @ x * y");
    CHECK(to_string(hadamard(y, A * x)) == "y * (A @ x)");
    CHECK(to_string((c<1> - s) * A) == "(1 - s) * A");
}

TEST_CASE("to_string: unary minus and powers") {
    CHECK(to_string(-u) == "-u");
    CHECK(to_string(-(-u)) == "u");
    CHECK(to_string(-(u + y)) == "-(u + y)");
    CHECK(to_string(-(u * y)) == "-(u * y)");
    CHECK(to_string(-(c<2> * u)) == "-(2 * u)");
    CHECK(to_string(-tanh(u)) == "-tanh(u)");
    CHECK(to_string(-transpose(A)) == "-A^T");
    CHECK(to_string(-square(u)) == "-u^2");
    CHECK(to_string(square(-u)) == "(-u)^2");
    CHECK(to_string(square(u)) == "u^2");
    CHECK(to_string(ipow<3>(u)) == "u^3");
    CHECK(to_string(ipow<3>(tanh(u))) == "tanh(u)^3");
    CHECK(to_string(square(A * x)) == "(A @ x)^2");
    CHECK(to_string(square(u * y)) == "(u * y)^2");
    CHECK(to_string(square(transpose(A))) == "(A^T)^2");
    CHECK(to_string(transpose(square(A))) == "(A^2)^T");
    CHECK(to_string(ipow<0>(u)) == "fill(1)");
    CHECK(to_string(ipow<1>(u)) == "u");
}

TEST_CASE("to_string: functions, reductions, fills") {
    CHECK(to_string(tanh(u)) == "tanh(u)");
    CHECK(to_string(exp(-u)) == "exp(-u)");
    CHECK(to_string(log(u + y)) == "log(u + y)");
    CHECK(to_string(sqrt(u)) == "sqrt(u)");
    CHECK(to_string(sigmoid(A * x)) == "sigmoid(A @ x)");
    CHECK(to_string(relu(u)) == "relu(u)");
    CHECK(to_string(softplus(u)) == "softplus(u)");
    CHECK(to_string(abs(u - y)) == "abs(u - y)");
    CHECK(to_string(sign(u)) == "sign(u)");
    CHECK(to_string(step(u)) == "step(u)");
    CHECK(to_string(huber(u - y, s)) == "huber(u - y, s)");
    CHECK(to_string(silu(u)) == "u * sigmoid(u)");
    CHECK(to_string(sum(u)) == "sum(u)");
    CHECK(to_string(mean(u)) == "1/3 * sum(u)");
    CHECK(to_string(mean(abs(u - y))) == "1/3 * sum(abs(u - y))");
    CHECK(to_string(dot(u, y)) == "sum(u * y)");
    CHECK(to_string(squared_norm(u)) == "sum(u^2)");
    CHECK(to_string(l2_normalize(u)) == "u / sqrt(sum(u^2))");
    CHECK(to_string(fill<shape<3>>(s)) == "fill(s)");
    CHECK(to_string(s + zero_tensor<shape<3>>{}) == "fill(s)");
    CHECK(to_string(sum(fill<shape<3>>(s))) == "3 * s");
    CHECK(to_string(hadamard(s, t)) == "s * t");
    // sqrt(2/pi) = 7978845608028654/10^16 and 0.044715 = 44715/10^6, normalised.
    CHECK(to_string(gelu(u)) ==
          "1/2 * u * (1 + tanh(3989422804014327/5000000000000000 * (u + 8943/200000 * u^3)))");
    CHECK(to_string(erf(u)) == "erf(u)");
    // 1/sqrt(2) = 7071067811865475/10^16, normalised.
    CHECK(to_string(gelu_exact(u)) == "1/2 * u * (1 + erf(282842712474619/400000000000000 * u))");
}

TEST_CASE("to_string: gradients are printed as their expressions") {
    constexpr auto f = sum(square(M * x - y));
    CHECK(to_string(grad(f, M)) == "outer(2 * (M @ x - y), x)");
    CHECK(to_string(grad(f, x)) == "M^T @ (2 * (M @ x - y))");
    CHECK(to_string(grad(f, y)) == "-(2 * (M @ x - y))");
    CHECK(to_string(grad(sum(square(x)), x)) == "2 * x");
    CHECK(to_string(grad(sum(x), x)) == "fill(1)");
    CHECK(to_string(grad(dot(u, y), y)) == "u");
    CHECK(to_string(grad(f, s)) == "0");
    CHECK(to_string(grad(sum(A * x), B)) == "0");
    // A gradient inside a larger expression, as in one step of gradient descent.
    CHECK(to_string(M - s * grad(f, M)) == "M - s * outer(2 * (M @ x - y), x)");
}

TEST_CASE("to_string: the inner loss and inner step of the seed problem") {
    constexpr auto M0 = matrix<"M0", 10, 10>;
    constexpr auto WK = matrix<"WK", 10, 10>;
    constexpr auto WV = matrix<"WV", 10, 10>;
    constexpr auto xs = vector<"x", 10>;
    constexpr auto theta = scalar<"theta">;
    constexpr auto alpha = scalar<"alpha">;
    constexpr auto inner = sum(square(M0 * (WK * xs) - WV * xs));
    CHECK(to_string(inner) == "sum((M0 @ (WK @ x) - WV @ x)^2)");
    CHECK(to_string(grad(inner, M0)) == "outer(2 * (M0 @ (WK @ x) - WV @ x), WK @ x)");
    CHECK(to_string((c<1> - alpha) * M0 - theta * grad(inner, M0)) ==
          "(1 - alpha) * M0 - theta * outer(2 * (M0 @ (WK @ x) - WV @ x), WK @ x)");
}
