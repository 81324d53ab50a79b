// Simplification in the builders: zero/one folding, constant folding, double transpose,
// re-association of products onto vectors, outer-product rules, `fill` stripping, and
// `grad` not descending into subtrees without the variable. Most checks are static: an
// expression is a type, so "is simplified to" means "has the same type as".
//
// The last part bounds the size of second derivatives (distinct nodes, and the tree size
// without sharing) so that a change that makes them blow up is caught here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <tuple>
#include <type_traits>

#include <mnemo/mnemo.hpp>

namespace {

using namespace mnemo;

template <class E>
using T = std::remove_cvref_t<E>;

/// The two expressions have the same type (are the same expression).
template <class E1, class E2>
constexpr bool same(E1, E2) {
    return std::is_same_v<T<E1>, T<E2>>;
}

/// Number of nodes of the expression as a tree: shared subexpressions counted once per use.
/// (Computed on types, so the compiler memoises it per distinct node: linear in the DAG.)
template <class E>
struct tree_size {
    static constexpr unsigned long long value = 1;
};
template <class Op, class... A>
struct tree_size<node<Op, A...>> {
    static constexpr unsigned long long value = (1ull + ... + tree_size<A>::value);
};
template <class E>
inline constexpr unsigned long long tree_size_v = tree_size<unwrap_t<E>>::value;

/// Number of distinct nodes (the DAG).
template <class E>
inline constexpr std::size_t dag_size_v = detail::topo_order<void, unwrap_t<E>>::type::size;

// Symbols used throughout. Sizes differ, so that a transposed shape cannot pass by accident.
constexpr auto A = matrix<"A", 3, 4>;
constexpr auto B = matrix<"B", 4, 5>;
constexpr auto C = matrix<"C", 5, 2>;
constexpr auto M = matrix<"M", 3, 4>;
constexpr auto u = vector<"u", 3>;
constexpr auto v = vector<"v", 4>;
constexpr auto w = vector<"w", 4>;
constexpr auto x = vector<"x", 3>;
constexpr auto x4 = vector<"x4", 4>;
constexpr auto x5 = vector<"x5", 5>;
constexpr auto y = vector<"y", 3>;
constexpr auto s = scalar<"s">;
constexpr auto t = scalar<"t">;

using S3 = shape<3>;
using S34 = shape<3, 4>;

// ---------------------------------------------------------------------------------------
// Multiplication and division by one, zero, minus one

static_assert(same(M * c<1>, M));
static_assert(same(c<1> * M, M));
static_assert(same(x * c<1>, x));
static_assert(same(hadamard(c<1>, x), x));
static_assert(same(s * c<1>, s));
static_assert(same(x / c<1>, x));
static_assert(same(M * c<0>, zero_tensor<S34>{}));
static_assert(same(hadamard(x, c<0>), zero_tensor<S3>{}));
static_assert(same(hadamard(zero_tensor<S3>{}, y), zero_tensor<S3>{}));
static_assert(same(s * c<0>, c<0>));
static_assert(same(c<0> / x, zero_tensor<S3>{}));
static_assert(same(x * c<-1>, -x));
static_assert(same(c<-1> * M, -M));
// A scalar factor goes first, and division by a constant is a product.
static_assert(same(x * c<1, 2>, c<1, 2> * x));
static_assert(same(x / c<2>, c<1, 2> * x));
static_assert(std::is_same_v<T<decltype(x / c<2>)>, node<mul_op, constant<1, 2>, T<decltype(x)>>>);
static_assert(same(hadamard(x, s), hadamard(s, x)));

// ---------------------------------------------------------------------------------------
// Adding and subtracting zero; x - x

static_assert(same(x + zero_tensor<S3>{}, x));
static_assert(same(zero_tensor<S3>{} + x, x));
static_assert(same(x + c<0>, x));
static_assert(same(c<0> + x, x));
static_assert(same(s + c<0>, s));
static_assert(same(M - zero_tensor<S34>{}, M));
static_assert(same(zero_tensor<S3>{} - x, -x));
static_assert(same(c<0> - s, -s));
// A scalar plus a zero tensor is the scalar broadcast to the tensor's shape.
static_assert(same(s + zero_tensor<S3>{}, fill<S3>(s)));
static_assert(same(x - x, zero_tensor<S3>{}));
static_assert(same(s - s, c<0>));
static_assert(same(M * v - M * v, zero_tensor<S3>{}));
static_assert(same(tanh(A * x4) - tanh(A * x4), zero_tensor<S3>{}));
static_assert(!same(x - y, zero_tensor<S3>{}));

// ---------------------------------------------------------------------------------------
// Constant folding (rationals, kept normalised)

static_assert(same(c<1, 2> + c<1, 3>, constant<5, 6>{}));
static_assert(same(c<1, 2> - c<1, 3>, constant<1, 6>{}));
static_assert(same(c<1, 3> + c<2, 3>, c<1>));
static_assert(same(c<1, 2> - c<1, 2>, c<0>));
static_assert(same(c<2, 3> * c<3, 4>, constant<1, 2>{}));
static_assert(same(hadamard(c<2, 3>, c<3, 4>), constant<1, 2>{}));
static_assert(same(c<1, 2> / c<1, 4>, constant<2>{}));
static_assert(same(-c<1, 2>, constant<-1, 2>{}));
static_assert(same(-(-c<1, 2>), constant<1, 2>{}));
static_assert(same(c<2, 4>, constant<1, 2>{}));
static_assert(same(c<1, -2>, constant<-1, 2>{}));
static_assert(same(c<0, 5>, constant<0>{}));
static_assert(same(square(c<3>), constant<9>{}));
static_assert(same(ipow<3>(c<1, 2>), constant<1, 8>{}));
static_assert(same((c<1> - c<1, 2>) * x, c<1, 2> * x));
static_assert(same(c<2> * (c<3> * c<1, 6>), c<1>));
static_assert(c<5, 6>.num == 5 && c<5, 6>.den == 6);
static_assert(constant<1, 4>::value<double>() == 0.25);
namespace lit {
using namespace mnemo::literals;
static_assert(same(2_c, constant<2>{}));
static_assert(same(1_c - c<1, 3>, constant<2, 3>{}));
}  // namespace lit

// ---------------------------------------------------------------------------------------
// Unary minus, powers, elementwise functions of zero, sums

static_assert(same(-(-x), x));
static_assert(same(-(-M), M));
static_assert(same(-(-(-x)), -x));
static_assert(same(-zero_tensor<S3>{}, zero_tensor<S3>{}));
static_assert(same(ipow<1>(x), x));
static_assert(same(ipow<0>(x), fill<S3>(c<1>)));
static_assert(same(square(zero_tensor<S3>{}), zero_tensor<S3>{}));
static_assert(same(tanh(zero_tensor<S3>{}), zero_tensor<S3>{}));    // tanh(0) = 0
static_assert(same(erf(zero_tensor<S3>{}), zero_tensor<S3>{}));     // erf(0) = 0
static_assert(same(relu(zero_tensor<S3>{}), zero_tensor<S3>{}));
static_assert(!same(exp(zero_tensor<S3>{}), zero_tensor<S3>{}));    // exp(0) = 1: not folded to 0
static_assert(!same(sigmoid(zero_tensor<S3>{}), zero_tensor<S3>{}));
static_assert(same(sum(zero_tensor<S34>{}), c<0>));
static_assert(same(sum(s), s));
static_assert(same(mean(x), c<1, 3> * sum(x)));
static_assert(same(dot(u, x), sum(hadamard(u, x))));

// ---------------------------------------------------------------------------------------
// fill: zero fills are zero tensors, fills are stripped inside products and sums

static_assert(same(fill<S3>(c<0>), zero_tensor<S3>{}));
static_assert(same(fill<shape<>>(s), s));
static_assert(same(hadamard(fill<S3>(s), x), s * x));
static_assert(same(hadamard(x, fill<S3>(s)), s * x));
static_assert(same(hadamard(fill<S3>(s), fill<S3>(t)), fill<S3>(s * t)));
static_assert(same(hadamard(fill<S3>(c<1>), x), x));
static_assert(same(sum(fill<S3>(s)), c<3> * s));
static_assert(same(sum(fill<S34>(c<2>)), c<24>));

// ---------------------------------------------------------------------------------------
// Matrix products, transpose, outer

static_assert(same(transpose(transpose(A)), A));
static_assert(same(transpose(transpose(A * B)), A * B));
static_assert(same(transpose(zero_tensor<S34>{}), zero_tensor<shape<4, 3>>{}));
static_assert(std::is_same_v<T<decltype(transpose(A))>, node<transpose_op, T<decltype(A)>>>);

// (A B) x = A (B x): two matrix-vector products, no matrix-matrix product.
using TA = T<decltype(A)>;
using TB = T<decltype(B)>;
using TC = T<decltype(C)>;
static_assert(std::is_same_v<T<decltype((A * B) * x5)>,
                             node<matmul_op, TA, node<matmul_op, TB, T<decltype(x5)>>>>);
static_assert(same((A * B) * x5, A * (B * x5)));
// Longer chains, whatever their bracketing, become the same right-associated chain.
constexpr auto x2 = vector<"x2", 2>;
static_assert(std::is_same_v<T<decltype(((A * B) * C) * x2)>,
                             node<matmul_op, TA, node<matmul_op, TB, node<matmul_op, TC, T<decltype(x2)>>>>>);
static_assert(same(((A * B) * C) * x2, (A * (B * C)) * x2));
static_assert(same(((A * B) * C) * x2, A * (B * (C * x2))));
// A matrix-matrix product alone stays one.
static_assert(std::is_same_v<T<decltype(A * B)>, node<matmul_op, TA, TB>>);
// Zero operands.
static_assert(same(zero_tensor<S34>{} * v, zero_tensor<S3>{}));
static_assert(same(A * zero_tensor<shape<4>>{}, zero_tensor<S3>{}));
static_assert(same(A * zero_tensor<shape<4, 5>>{}, zero_tensor<shape<3, 5>>{}));

// transpose(u v^T) = v u^T;  (u v^T) w = u (v . w).
static_assert(same(transpose(outer(u, v)), outer(v, u)));
static_assert(std::is_same_v<T<decltype(transpose(outer(u, v)))>,
                             node<outer_op, T<decltype(v)>, T<decltype(u)>>>);
static_assert(same(outer(u, v) * w, dot(v, w) * u));
static_assert(same(outer(u, v) * w, hadamard(sum(hadamard(v, w)), u)));
static_assert(same(transpose(outer(v, u)) * w, dot(v, w) * u));
static_assert(same(outer(zero_tensor<S3>{}, v), zero_tensor<S34>{}));
static_assert(same(outer(u, zero_tensor<shape<4>>{}), zero_tensor<S34>{}));

// ---------------------------------------------------------------------------------------
// grad: results that fold, and no descent into subtrees without the variable

// The variable does not occur: a zero tensor (or the scalar zero), not a derivative.
static_assert(same(grad(sum(A * x4), B), zero_tensor<shape<4, 5>>{}));
static_assert(same(grad(sum(tanh(A * x4)), y), zero_tensor<S3>{}));
static_assert(same(grad(sum(tanh(A * x4)), s), c<0>));
static_assert(same(grad(c<3>, s), c<0>));
// Results that fold to a leaf are returned as themselves.
static_assert(same(grad(dot(u, x), x), u));
static_assert(same(grad(s, s), c<1>));
static_assert(same(grad(c<2> * s, s), c<2>));
// Non-trivial results are handed out as derivative<F, X>, whose expression is unwrap_t.
constexpr auto fsq = sum(square(x));
static_assert(std::is_same_v<T<decltype(grad(fsq, x))>, derivative<T<decltype(fsq)>, T<decltype(x)>>>);
static_assert(std::is_same_v<unwrap_t<decltype(grad(fsq, x))>, T<decltype(c<2> * x)>>);
static_assert(std::is_same_v<unwrap_t<decltype(grad(sum(x), x))>, T<decltype(fill<S3>(c<1>))>>);
static_assert(std::is_same_v<unwrap_t<decltype(grad(mean(x), x))>, T<decltype(fill<S3>(c<1, 3>))>>);
static_assert(std::is_same_v<unwrap_t<decltype(grad(s * s, s))>, T<decltype(s + s)>>);
static_assert(std::is_same_v<unwrap_t<decltype(grad(sum(A * x4), x4))>,
                             T<decltype(transpose(A) * fill<S3>(c<1>))>>);
// The derivative is an opaque expression of the variable's shape for the builders.
constexpr auto gx = grad(fsq, x);
static_assert(std::is_same_v<shape_of<decltype(gx)>, S3>);
static_assert(same(gx + zero_tensor<S3>{}, gx));
static_assert(same(gx * c<1>, gx));
static_assert(same(gx - gx, zero_tensor<S3>{}));
static_assert(same(-(-gx), gx));

// A subtree without the variable contributes nothing: f has 10 distinct nodes, 4 of which
// contain x4 (the sum at the root, sum(A x4), A x4, x4), and the gradient with respect to
// x4 is that of the first term alone, without B or x5 in it.
constexpr auto f_two = sum(A * x4) + sum(tanh(B * x5));
using F_two = T<decltype(f_two)>;
static_assert(detail::topo_order<void, F_two>::type::size == 10);
static_assert(detail::topo_order<T<decltype(x4)>, F_two>::type::size == 4);
static_assert(detail::topo_order<T<decltype(x5)>, F_two>::type::size == 5);
static_assert(std::is_same_v<unwrap_t<decltype(grad(f_two, x4))>, unwrap_t<decltype(grad(sum(A * x4), x4))>>);
static_assert(!detail::contains<unwrap_t<decltype(grad(f_two, x4))>, TB>::value);
static_assert(!detail::contains<unwrap_t<decltype(grad(f_two, x4))>, T<decltype(x5)>>::value);

// ---------------------------------------------------------------------------------------
// Size of second derivatives: a 2-layer MLP loss

constexpr auto W1 = matrix<"W1", 6, 4>;
constexpr auto W2 = matrix<"W2", 4, 6>;
constexpr auto U1 = matrix<"U1", 6, 4>;  // directions for the Hessian-vector products
constexpr auto U2 = matrix<"U2", 4, 6>;
constexpr auto k = vector<"k", 4>;
constexpr auto vt = vector<"vt", 4>;

constexpr auto mlp = sum(square(W2 * silu(W1 * k) - vt));
constexpr auto g1 = grad(mlp, W1);
constexpr auto g2 = grad(mlp, W2);
constexpr auto h11 = grad(sum(hadamard(g1, U1)), W1);
constexpr auto h12 = grad(sum(hadamard(g1, U1)), W2);  // the mixed second derivative
constexpr auto h21 = grad(sum(hadamard(g2, U2)), W1);
constexpr auto h22 = grad(sum(hadamard(g2, U2)), W2);

// Measured (g++ 12 and clang++ 14 agree, as they must: these are types):
//   loss  distinct nodes 11, tree 14
//   g1    distinct nodes 21, tree 58      g2   distinct nodes 12, tree 23
//   h11   distinct nodes 41, tree 215     h12  distinct nodes 25, tree 85
//   h21   distinct nodes 27, tree 90      h22  distinct nodes 10, tree 21
//   one plan of h11, h12, h21, h22: 57 distinct nodes
// Bounds: about 1.5 times the measured values.
static_assert(dag_size_v<decltype(mlp)> == 11 && tree_size_v<decltype(mlp)> == 14);
static_assert(dag_size_v<decltype(g1)> <= 32 && tree_size_v<decltype(g1)> <= 87);
static_assert(dag_size_v<decltype(g2)> <= 18 && tree_size_v<decltype(g2)> <= 35);
static_assert(dag_size_v<decltype(h11)> <= 62 && tree_size_v<decltype(h11)> <= 323);
static_assert(dag_size_v<decltype(h12)> <= 38 && tree_size_v<decltype(h12)> <= 128);
static_assert(dag_size_v<decltype(h21)> <= 41 && tree_size_v<decltype(h21)> <= 135);
static_assert(dag_size_v<decltype(h22)> <= 15 && tree_size_v<decltype(h22)> <= 32);
static_assert(decltype(compile<double>(h11, h12, h21, h22))::node_count <= 86);
// Not degenerate: the second derivatives are real expressions, not folded to zero.
static_assert(is_node_v<unwrap_t<decltype(h11)>> && is_node_v<unwrap_t<decltype(h12)>> &&
              is_node_v<unwrap_t<decltype(h21)>> && is_node_v<unwrap_t<decltype(h22)>>);
static_assert(dag_size_v<decltype(h12)> >= 10 && dag_size_v<decltype(h11)> >= 20);
// A plan's node_count is the number of distinct nodes of its (unwrapped) outputs.
static_assert(decltype(compile<double>(h12))::node_count == dag_size_v<decltype(h12)>);
static_assert(decltype(compile<double>(h11))::node_count == dag_size_v<decltype(h11)>);
// The mixed derivatives are the same function (symmetry of the Hessian), as expressions
// they may differ; both sides must at least mention the direction they are taken along.
static_assert(detail::contains<unwrap_t<decltype(h12)>, T<decltype(U1)>>::value);
static_assert(detail::contains<unwrap_t<decltype(h21)>, T<decltype(U2)>>::value);

// ---------------------------------------------------------------------------------------
// Sharing: the DAG stays small where the tree is large

// e_0 = x, e_{n+1} = e_n * e_n: a tree of 2^(n+1) - 1 nodes, a DAG of n + 1 nodes.
template <int N>
struct squarings {
    using prev = typename squarings<N - 1>::type;
    using type = decltype(hadamard(prev{}, prev{}));
};
template <>
struct squarings<0> {
    using type = T<decltype(x)>;
};
constexpr auto chain = sum(typename squarings<8>::type{});
constexpr auto chain_grad = grad(chain, x);
// Measured: chain 10 distinct nodes, tree 512; its gradient 23 distinct nodes, tree 87379.
static_assert(dag_size_v<decltype(chain)> == 10 && tree_size_v<decltype(chain)> == 512);
static_assert(dag_size_v<decltype(chain_grad)> <= 35);
static_assert(tree_size_v<decltype(chain_grad)> >= 1000 * dag_size_v<decltype(chain_grad)>);
static_assert(decltype(compile<double>(chain, chain_grad))::node_count <= 35);

// A tanh RNN of 4 steps with a shared weight, differentiated twice.
constexpr auto R = matrix<"R", 3, 3>;
constexpr auto RU = matrix<"RU", 3, 3>;
constexpr auto h0 = vector<"h0", 3>;
template <int N>
struct rnn {
    using type = decltype(tanh(R * typename rnn<N - 1>::type{} + x));
};
template <>
struct rnn<0> {
    using type = T<decltype(h0)>;
};
constexpr auto rnn_loss = sum(square(typename rnn<4>::type{}));
constexpr auto rnn_g = grad(rnn_loss, R);
constexpr auto rnn_h = grad(sum(hadamard(rnn_g, RU)), R);
// Measured: loss 17 / 23, gradient 41 / 351, second derivative 96 / 2797 (distinct / tree).
static_assert(dag_size_v<decltype(rnn_loss)> == 17 && tree_size_v<decltype(rnn_loss)> == 23);
static_assert(dag_size_v<decltype(rnn_g)> <= 62 && tree_size_v<decltype(rnn_g)> <= 527);
static_assert(dag_size_v<decltype(rnn_h)> <= 144 && tree_size_v<decltype(rnn_h)> <= 4196);
static_assert(tree_size_v<decltype(rnn_h)> >= 10 * dag_size_v<decltype(rnn_h)>);

// ---------------------------------------------------------------------------------------
// Run-time checks that the simplified forms compute the same values.

template <std::size_t... D>
xt::xtensor<double, sizeof...(D)> pattern(double phase) {
    xt::xtensor<double, sizeof...(D)> a(std::array<std::size_t, sizeof...(D)>{D...});
    for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = 0.5 * std::sin(0.7 + 1.3 * double(i) + phase);
    return a;
}

}  // namespace

TEST_CASE("re-associated products and outer-product rules compute the unsimplified values") {
    const auto a = pattern<3, 4>(0.1);
    const auto b = pattern<4, 5>(0.2);
    const auto xv = pattern<5>(0.3);
    const auto uv = pattern<3>(0.4);
    const auto vv = pattern<4>(0.5);
    const auto wv = pattern<4>(0.6);

    auto p = compile<double>((A * B) * x5, outer(u, v) * w, transpose(outer(u, v)));
    auto [abx, ouvw, tuv] = p(A = a, B = b, x5 = xv, u = uv, v = vv, w = wv);
    for (std::size_t i = 0; i < 3; ++i) {
        double ref = 0;
        for (std::size_t j = 0; j < 4; ++j)
            for (std::size_t l = 0; l < 5; ++l) ref += a(i, j) * b(j, l) * xv(l);
        CHECK(abx(i) == doctest::Approx(ref).epsilon(1e-14));
        double vw = 0;
        for (std::size_t j = 0; j < 4; ++j) vw += vv(j) * wv(j);
        CHECK(ouvw(i) == doctest::Approx(uv(i) * vw).epsilon(1e-14));
    }
    REQUIRE(tuv.shape()[0] == 4);
    REQUIRE(tuv.shape()[1] == 3);
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 3; ++j) CHECK(tuv(i, j) == doctest::Approx(vv(i) * uv(j)).epsilon(1e-15));
}

TEST_CASE("folded constants and fills evaluate to their values") {
    const auto xv = pattern<3>(0.0);
    auto p = compile<double>(sum(fill<S3>(s)) + (c<1, 2> + c<1, 3>) * s, x / c<2>, x - x + s);
    auto [r0, r1, r2] = p(s = 1.5, x = xv);
    CHECK(r0 == doctest::Approx(3 * 1.5 + 5.0 / 6.0 * 1.5).epsilon(1e-15));
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(r1(i) == doctest::Approx(xv(i) / 2).epsilon(1e-15));
        CHECK(r2(i) == 1.5);
    }
}

TEST_CASE("the mixed second derivative of the MLP loss matches finite differences of the gradient") {
    const auto w1 = pattern<6, 4>(0.3);
    const auto w2 = pattern<4, 6>(1.1);
    const auto u1 = pattern<6, 4>(2.3);
    const auto kv = pattern<4>(0.9);
    const auto vtv = pattern<4>(1.7);

    auto ph = compile<double>(h12, h11);
    auto [h12v, h11v] = ph(W1 = w1, W2 = w2, U1 = u1, k = kv, vt = vtv);
    const xt::xtensor<double, 2> d12 = h12v;  // copies: the views die with the next call
    const xt::xtensor<double, 2> d11 = h11v;

    // phi(W1, W2) = sum(g1(W1, W2) * U1); h12 = d phi / d W2, h11 = d phi / d W1.
    auto pphi = compile<double>(sum(hadamard(g1, U1)));
    auto phi = [&](const xt::xtensor<double, 2>& a, const xt::xtensor<double, 2>& b) {
        return std::get<0>(pphi(W1 = a, W2 = b, U1 = u1, k = kv, vt = vtv));
    };
    auto fd = [&](auto&& f, const xt::xtensor<double, 2>& at, std::size_t n) {
        const double h = 1e-3;
        auto shifted = [&](double by) {
            xt::xtensor<double, 2> z = at;
            z.data()[n] += by;
            return f(z);
        };
        return (8 * (shifted(h) - shifted(-h)) - (shifted(2 * h) - shifted(-2 * h))) / (12 * h);
    };
    double max_err = 0;
    for (std::size_t n = 0; n < d12.size(); ++n) {
        const double ref = fd([&](const auto& z) { return phi(w1, z); }, w2, n);
        max_err = std::max(max_err, std::abs(d12.data()[n] - ref) / std::max(1.0, std::abs(ref)));
    }
    for (std::size_t n = 0; n < d11.size(); ++n) {
        const double ref = fd([&](const auto& z) { return phi(z, w2); }, w1, n);
        max_err = std::max(max_err, std::abs(d11.data()[n] - ref) / std::max(1.0, std::abs(ref)));
    }
    CHECK(max_err < 1e-8);
}
