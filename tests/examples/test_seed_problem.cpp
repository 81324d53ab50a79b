// The seed problem example (examples/seed_problem.hpp): one Titans memory step, with the
// meta-gradients of the outer loss through the inner gradient.
//
// Checked here:
//  - the loss, recomputed independently with plain loops;
//  - every entry of the four meta-gradients (M0, WK, WV, WQ) against central finite
//    differences of the example's own outer loss;
//  - the gradients of M0, WV and WQ against closed forms derived by hand;
//  - that WK and WV get a non-zero gradient (the user's original bug: they reach the outer
//    loss only through the inner gradient).
//
// Finite differences: within the region where no entry of y - target changes sign, the
// outer loss is a polynomial of degree at most 2 in each parameter matrix (M1 is linear in
// M0 and WV, quadratic in WK; y is linear in WQ), so the 4-point central stencil
//   f'(p) ~ (8 (f(p + h) - f(p - h)) - (f(p + 2h) - f(p - 2h))) / (12 h)
// is exact up to rounding. h = 1e-3 keeps every perturbed point in that region (checked).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <string>
#include <tuple>

#include "examples/seed_problem.hpp"

namespace {

constexpr std::size_t d = seed::d;
using mat = xt::xtensor<double, 2>;
using vec = xt::xtensor<double, 1>;

struct result {
    double loss;
    mat g_m0, g_wk, g_wv, g_wq;
};

/// The example's plan, evaluated on the example's data (results copied out of the arena).
result run_example() {
    auto plan = seed::make_plan();
    const seed::data values;
    auto [loss, g_m0, g_wk, g_wv, g_wq] = seed::evaluate(plan, values);
    return {loss, g_m0, g_wk, g_wv, g_wq};
}

/// The outer loss as a function of the four learned matrices, through a plan of the
/// example's own `outer_loss` expression.
struct outer_loss_fn {
    decltype(mnemo::compile<double>(seed::outer_loss)) plan = mnemo::compile<double>(seed::outer_loss);
    seed::data v;

    double operator()(const mat& m0, const mat& wk, const mat& wv, const mat& wq) {
        using namespace seed;
        return std::get<0>(plan(M0 = m0, S0 = v.s0, WK = wk, WV = wv, WQ = wq, x = v.x, target = v.x,
                                eta = v.eta, alpha = v.alpha, theta = v.theta));
    }
};

vec matvec(const mat& a, const vec& b) {
    vec r = xt::zeros<double>({a.shape()[0]});
    for (std::size_t i = 0; i < a.shape()[0]; ++i)
        for (std::size_t j = 0; j < a.shape()[1]; ++j) r(i) += a(i, j) * b(j);
    return r;
}

/// Everything of the forward pass, with plain loops (no mnemo).
struct forward {
    vec k, v, q, y, r;
    mat m1;
    double loss = 0;
};

forward forward_by_hand(const seed::data& in) {
    forward f;
    f.k = matvec(in.wk, in.x);  // k = WK x
    f.v = matvec(in.wv, in.x);  // v = WV x
    const vec e = matvec(in.m0, f.k) - f.v;
    // g = grad_M0 ||M0 k - v||^2 = 2 (M0 k - v) k^T;  S1 = eta S0 - theta g;
    // M1 = (1 - alpha) M0 + S1
    f.m1 = mat(std::array<std::size_t, 2>{d, d});
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j) {
            const double g = 2 * e(i) * f.k(j);
            f.m1(i, j) = (1 - in.alpha) * in.m0(i, j) + in.eta * in.s0(i, j) - in.theta * g;
        }
    f.q = matvec(in.wq, in.x);  // q = WQ x
    f.y = matvec(f.m1, f.q);    // y = M1 q
    f.r = f.y - in.x;           // the target is the token
    double acc = 0;
    for (std::size_t i = 0; i < d; ++i) acc += std::abs(f.r(i));
    f.loss = acc / double(d);  // L = mean |y - x|
    return f;
}

/// Largest relative error, entry by entry, of `g` against the 4-point finite differences
/// of `loss` with respect to the parameter matrix `which` (0: M0, 1: WK, 2: WV, 3: WQ).
/// (The smallest entry of these gradients is about 4e-4 in magnitude: no entry is so close
/// to zero that a relative error would be meaningless.)
double max_fd_error(outer_loss_fn& loss, const mat& g, int which) {
    const seed::data base;
    std::array<mat, 4> p = {base.m0, base.wk, base.wv, base.wq};
    const double h = 1e-3;
    double worst = 0;
    for (std::size_t n = 0; n < d * d; ++n) {
        auto at = [&](double by) {
            auto q = p;
            q[which].data()[n] += by;
            return loss(q[0], q[1], q[2], q[3]);
        };
        const double fd = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
        const double size = std::max(std::abs(fd), std::abs(g.data()[n]));
        worst = std::max(worst, size == 0 ? 0.0 : std::abs(g.data()[n] - fd) / size);
    }
    return worst;
}

}  // namespace

TEST_CASE("seed: the loss is finite and equals the loss computed with plain loops") {
    const result r = run_example();
    REQUIRE(std::isfinite(r.loss));
    const forward f = forward_by_hand(seed::data{});
    CHECK(r.loss > 0);
    CHECK(std::abs(r.loss - f.loss) <= 1e-13 * std::abs(f.loss));
    // The example's own outer-loss plan agrees too.
    outer_loss_fn loss;
    const seed::data v;
    CHECK(std::abs(loss(v.m0, v.wk, v.wv, v.wq) - f.loss) <= 1e-13 * std::abs(f.loss));
}

TEST_CASE("seed: the finite differences stay where the L1 loss is smooth") {
    // No entry of y - x may change sign within +-2h of the data: the smallest |y_i - x_i|
    // must be far above what a 2e-3 change of one parameter can do to y.
    const forward f = forward_by_hand(seed::data{});
    const double smallest = xt::amin(xt::abs(f.r))();
    CHECK(smallest > 1e-2);
}

TEST_CASE("seed: every meta-gradient entry matches finite differences of the outer loss") {
    const result r = run_example();
    outer_loss_fn loss;
    const std::array<const mat*, 4> grads = {&r.g_m0, &r.g_wk, &r.g_wv, &r.g_wq};
    const std::array<std::string, 4> names = {"M0", "WK", "WV", "WQ"};
    for (int which = 0; which < 4; ++which) {
        CAPTURE(names[which]);
        const mat& g = *grads[which];
        REQUIRE(g.shape()[0] == d);
        REQUIRE(g.shape()[1] == d);
        REQUIRE(xt::all(xt::isfinite(g)));
        const double err = max_fd_error(loss, g, which);
        CAPTURE(err);
        CHECK(err <= 1e-7);
    }
}

TEST_CASE("seed: WK and WV get a gradient (they reach the loss through the inner gradient)") {
    const result r = run_example();
    const double wk = xt::amax(xt::abs(r.g_wk))();
    const double wv = xt::amax(xt::abs(r.g_wv))();
    CHECK(wk > 1e-3);
    CHECK(wv > 1e-3);
    // With theta = 0 the inner step does not use the inner gradient, and the gradients of
    // WK and WV vanish: the non-zero values above come from the second derivatives.
    auto plan = seed::make_plan();
    seed::data values;
    values.theta = 0;
    auto [loss0, g_m0, g_wk, g_wv, g_wq] = seed::evaluate(plan, values);
    CHECK(std::isfinite(loss0));
    CHECK(xt::amax(xt::abs(g_wk))() == 0.0);
    CHECK(xt::amax(xt::abs(g_wv))() == 0.0);
    CHECK(xt::amax(xt::abs(g_wq))() > 1e-3);
}

TEST_CASE("seed: the gradients of M0, WV and WQ equal their closed forms") {
    // L = (1/d) sum_i |r_i|, r = y - x, y = M1 q, q = WQ x, k = WK x, v = WV x (S0 = 0):
    //   y = (1 - alpha) M0 q - 2 theta (k . q) (M0 k - v)
    // With s = sign(r) / d:
    //   dL/dM0 = s ((1 - alpha) q - 2 theta (k . q) k)^T
    //   dL/dWV = 2 theta (k . q) s x^T
    //   dL/dWQ = M1^T s x^T
    const seed::data in;
    const result r = run_example();
    const forward f = forward_by_hand(in);
    double kq = 0;
    for (std::size_t j = 0; j < d; ++j) kq += f.k(j) * f.q(j);
    vec s = xt::zeros<double>({d});
    for (std::size_t i = 0; i < d; ++i) s(i) = (f.r(i) > 0 ? 1.0 : -1.0) / double(d);
    vec m1ts = xt::zeros<double>({d});
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j) m1ts(j) += f.m1(i, j) * s(i);

    double err_m0 = 0, err_wv = 0, err_wq = 0;
    for (std::size_t i = 0; i < d; ++i)
        for (std::size_t j = 0; j < d; ++j) {
            const double m0 = s(i) * ((1 - in.alpha) * f.q(j) - 2 * in.theta * kq * f.k(j));
            const double wv = 2 * in.theta * kq * s(i) * in.x(j);
            const double wq = m1ts(i) * in.x(j);
            err_m0 = std::max(err_m0, std::abs(r.g_m0(i, j) - m0));
            err_wv = std::max(err_wv, std::abs(r.g_wv(i, j) - wv));
            err_wq = std::max(err_wq, std::abs(r.g_wq(i, j) - wq));
        }
    CAPTURE(err_m0);
    CAPTURE(err_wv);
    CAPTURE(err_wq);
    CHECK(err_m0 <= 1e-14);
    CHECK(err_wv <= 1e-14);
    CHECK(err_wq <= 1e-14);
}

TEST_CASE("seed: the plan stays small") {
    using plan_t = decltype(seed::make_plan());
    // Measured: 52 distinct nodes, 27 buffers, an arena of 1296 doubles (g++ 12, clang++ 14).
    static_assert(plan_t::node_count <= 78);
    static_assert(plan_t::buffer_count <= 40);
    static_assert(plan_t::arena_size <= 1944);
    CHECK(plan_t::node_count > 0);
}
