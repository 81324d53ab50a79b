// A plan allocates its arena once, when it is made; evaluating it again allocates nothing.
// This executable replaces the global operator new to count heap allocations.
#include <doctest/doctest.h>

#include "support/count_allocations.hpp"

#include <mnemo/mnemo.hpp>

using mnemo_test::allocations;

TEST_CASE("evaluating a plan again does not allocate") {
    constexpr std::size_t n = 32;
    constexpr auto M = mnemo::matrix<"M", n, n>;
    constexpr auto K = mnemo::matrix<"K", n, n>;
    constexpr auto x = mnemo::vector<"x", n>;
    constexpr auto eta = mnemo::scalar<"eta">;
    constexpr auto f = mnemo::sum(mnemo::tanh(M * (K * x) - eta * x));
    auto plan = mnemo::compile<double>(f, mnemo::grad(f, M), mnemo::grad(f, K));

    xt::xtensor<double, 2> m = 0.1 * xt::ones<double>({n, n});
    xt::xtensor<double, 2> k = 0.2 * xt::eye<double>(n);
    xt::xtensor<double, 1> xv = xt::linspace<double>(-1.0, 1.0, n);

    auto first = plan(M = m, K = k, x = xv, eta = 0.5);  // may allocate nothing either
    const double loss = std::get<0>(first);
    const long before = allocations.load();
    for (int i = 0; i < 10; ++i) {
        auto [l, gm, gk] = plan(M = m, K = k, x = xv, eta = 0.5);
        CHECK(l == loss);
        CHECK(gm(0, 0) == gm(0, 0));  // touch the views
        plan.run(M = m, K = k, x = xv, eta = 0.5);
    }
    CHECK(allocations.load() - before == 0);
    // The counter does count: a std::vector allocates.
    const long mark = allocations.load();
    std::vector<double> v(100, 1.0);
    CHECK(allocations.load() - mark >= 1);
    CHECK(v[99] == 1.0);
}
