// The seed problem of mnemo's reference problems, as a user writes it.
//
// A user implementing the Titans memory asked why, after one inner step
//     M_1 = (1 - alpha) M_0 + S_1,   S_1 = eta S_0 - theta grad_M ||M_0 W_K x - W_V x||^2,
// the outer loss L1(M_1 W_Q x, x) gave W_K and W_V no gradient. The answer: W_K and W_V
// reach the outer loss only *through the inner gradient*, so the inner update must stay
// differentiable, and the outer gradient must differentiate the inner gradient again
// (second derivatives). Here both levels are derived at compile time.
#pragma once

#include <cmath>

#include <mnemo/mnemo.hpp>

namespace seed {

inline constexpr std::size_t d = 10;

// Symbols: a name and a compile-time shape. Each is bound to data when evaluated.
inline constexpr auto M0 = mnemo::matrix<"M0", d, d>;  // the memory before the step (learned)
inline constexpr auto S0 = mnemo::matrix<"S0", d, d>;  // the surprise (momentum) state, zero here
inline constexpr auto WK = mnemo::matrix<"WK", d, d>;  // key projection (learned)
inline constexpr auto WV = mnemo::matrix<"WV", d, d>;  // value projection (learned)
inline constexpr auto WQ = mnemo::matrix<"WQ", d, d>;  // query projection (learned)
inline constexpr auto x = mnemo::vector<"x", d>;       // the token
inline constexpr auto target = mnemo::vector<"target", d>;
inline constexpr auto eta = mnemo::scalar<"eta">;      // momentum
inline constexpr auto alpha = mnemo::scalar<"alpha">;  // forget gate
inline constexpr auto theta = mnemo::scalar<"theta">;  // inner learning rate

// The inner loss: how badly the memory maps the key to the value.
inline constexpr auto k = WK * x;
inline constexpr auto v = WV * x;
inline constexpr auto inner_loss = mnemo::sum(mnemo::square(M0 * k - v));

// One inner step. `grad(inner_loss, M0)` is an expression, not a number: it still depends
// on WK and WV, which is exactly what gives them an outer gradient.
inline constexpr auto S1 = eta * S0 - theta * mnemo::grad(inner_loss, M0);
inline constexpr auto M1 = (mnemo::c<1> - alpha) * M0 + S1;

// Retrieval with the updated memory, and the L1 outer loss (mean over features).
inline constexpr auto y = M1 * (WQ * x);
inline constexpr auto outer_loss = mnemo::mean(mnemo::abs(y - target));

// The meta-gradients: differentiating outer_loss with respect to WK differentiates the
// inner gradient inside M1 a second time.
inline auto make_plan() {
    using mnemo::grad;
    return mnemo::compile<double>(outer_loss, grad(outer_loss, M0), grad(outer_loss, WK),
                                  grad(outer_loss, WV), grad(outer_loss, WQ));
}

/// `det(shape, phase, scale)[n] = scale * sin(1 + 0.37 n + phase)` of the reference problems.
template <std::size_t... Dims>
xt::xtensor<double, sizeof...(Dims)> det(double phase, double scale) {
    xt::xtensor<double, sizeof...(Dims)> a(std::array<std::size_t, sizeof...(Dims)>{Dims...});
    for (std::size_t n = 0; n < a.size(); ++n) a.data()[n] = scale * std::sin(1.0 + 0.37 * double(n) + phase);
    return a;
}

/// The reference values of the seed problem.
struct data {
    xt::xtensor<double, 2> m0 = det<d, d>(0.5, 0.1);
    xt::xtensor<double, 2> s0 = xt::zeros<double>({d, d});
    xt::xtensor<double, 2> wk = det<d, d>(1.5, 0.3);
    xt::xtensor<double, 2> wv = det<d, d>(2.5, 0.3);
    xt::xtensor<double, 2> wq = det<d, d>(3.5, 0.3);
    xt::xtensor<double, 1> x = det<d>(4.5, 1.0);  // tokens (T, d) with T = 1
    double eta = 0.9, alpha = 0.1, theta = 0.1;
};

/// Evaluate the plan on the data: loss and the four meta-gradients.
template <class Plan>
auto evaluate(Plan& p, const data& v) {
    // The target is the token itself (the user's L1(y, x)).
    return p(M0 = v.m0, S0 = v.s0, WK = v.wk, WV = v.wv, WQ = v.wq, x = v.x, target = v.x, eta = v.eta,
             alpha = v.alpha, theta = v.theta);
}

}  // namespace seed
