// plan::run_unchecked_into writes chosen results to given places instead of the arena.
//
// A momentum step written as expressions: S' = eta S - theta (M k - v) k^T, M' = (1 - a) M +
// S' (a result read by another result), the retrieval loss, S' asked for twice (one node,
// two results) and M itself (a leaf result). Written into destinations, every result must
// be bit-identical to the same evaluation in the arena; results without a destination stay
// in the arena; a later plain evaluation uses the arena again.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include <mnemo/mnemo.hpp>

namespace {

constexpr std::size_t n = 6;
constexpr auto M = mnemo::matrix<"M", n, n>;
constexpr auto S = mnemo::matrix<"S", n, n>;
constexpr auto k = mnemo::vector<"k", n>;
constexpr auto v = mnemo::vector<"v", n>;
constexpr auto q = mnemo::vector<"q", n>;
constexpr auto eta = mnemo::scalar<"eta">;
constexpr auto theta = mnemo::scalar<"theta">;
constexpr auto a = mnemo::scalar<"a">;

constexpr auto S1 = eta * S - theta * mnemo::outer(M * k - v, k);
constexpr auto M1 = (mnemo::c<1> - a) * M + S1;
constexpr auto loss = mnemo::sum(mnemo::tanh(M1 * q));

template <class Sym, class E>
constexpr bool is = std::is_same_v<Sym, std::remove_cvref_t<E>>;

struct data {
    std::vector<double> m_, s_, k_, v_, q_;
    double eta_ = 0.9, theta_ = 0.3, a_ = 0.05;
    data() : m_(n * n), s_(n * n), k_(n), v_(n), q_(n) {
        for (std::size_t i = 0; i < n * n; ++i) {
            m_[i] = 0.1 * double(i % 7) - 0.3;
            s_[i] = 0.05 * double(i % 5) - 0.1;
        }
        for (std::size_t i = 0; i < n; ++i) {
            k_[i] = 0.2 * double(i) - 0.4;
            v_[i] = 0.3 - 0.1 * double(i);
            q_[i] = 0.15 * double(i % 3) + 0.1;
        }
    }
    template <class Sym>
    const double* pointer() const {
        if constexpr (is<Sym, decltype(M)>) return m_.data();
        else if constexpr (is<Sym, decltype(S)>) return s_.data();
        else if constexpr (is<Sym, decltype(k)>) return k_.data();
        else if constexpr (is<Sym, decltype(v)>) return v_.data();
        else if constexpr (is<Sym, decltype(q)>) return q_.data();
        else if constexpr (is<Sym, decltype(eta)>) return &eta_;
        else if constexpr (is<Sym, decltype(theta)>) return &theta_;
        else {
            static_assert(is<Sym, decltype(a)>, "a symbol of the plan without data");
            return &a_;
        }
    }
    template <class Plan, class... Syms>
    typename Plan::pointers pointers(mnemo::detail::list<Syms...>) const {
        return {pointer<Syms>()...};
    }
};

/// The step by hand: S1 and M1 at entry i.
std::pair<std::vector<double>, std::vector<double>> by_hand(const data& x) {
    std::vector<double> s1(n * n), m1(n * n);
    for (std::size_t i = 0; i < n; ++i) {
        double r = -x.v_[i];
        for (std::size_t j = 0; j < n; ++j) r += x.m_[i * n + j] * x.k_[j];
        for (std::size_t j = 0; j < n; ++j) {
            s1[i * n + j] = x.eta_ * x.s_[i * n + j] - x.theta_ * (r * x.k_[j]);
            m1[i * n + j] = (1 - x.a_) * x.m_[i * n + j] + s1[i * n + j];
        }
    }
    return {s1, m1};
}

}  // namespace

TEST_CASE("results written into given places equal the arena's, bit for bit") {
    auto plan = mnemo::compile<double>(S1, M1, loss, S1, M);
    using plan_t = decltype(plan);
    const data x;
    const auto ptrs = x.pointers<plan_t>(typename plan_t::graph::symbols{});

    plan.run_unchecked(ptrs);
    const std::vector<double> s1(plan.data<0>(), plan.data<0>() + n * n), m1(plan.data<1>(), plan.data<1>() + n * n);
    const double l = *plan.data<2>();
    // The evaluation itself, against the step by hand (and so not a comparison of a
    // result with itself): the step changes the memory.
    const auto [s_ref, m_ref] = by_hand(x);
    double err = 0;
    for (std::size_t i = 0; i < n * n; ++i)
        err = std::max({err, std::abs(s1[i] - s_ref[i]), std::abs(m1[i] - m_ref[i])});
    CHECK(err <= 1e-15);
    CHECK(m1 != x.m_);

    std::vector<double> s_out(n * n, -1.0), m_out(n * n, -1.0), s_again(n * n, -1.0), m_leaf(n * n, -1.0);
    plan.run_unchecked_into(ptrs, {s_out.data(), m_out.data(), nullptr, s_again.data(), m_leaf.data()});
    CHECK(s_out == s1);
    CHECK(m_out == m1);
    CHECK(s_again == s1);
    CHECK(m_leaf == x.m_);
    CHECK(*plan.data<2>() == l);  // no destination: in the arena

    // Only some results placed: the others are in the arena.
    std::vector<double> m_only(n * n, -1.0);
    plan.run_unchecked_into(ptrs, {nullptr, m_only.data(), nullptr, nullptr, nullptr});
    CHECK(m_only == m1);
    CHECK(std::vector<double>(plan.data<0>(), plan.data<0>() + n * n) == s1);
    CHECK(std::vector<double>(plan.data<3>(), plan.data<3>() + n * n) == s1);

    // A plain evaluation afterwards uses the arena again.
    plan.run_unchecked(ptrs);
    CHECK(std::vector<double>(plan.data<1>(), plan.data<1>() + n * n) == m1);
    CHECK(*plan.data<2>() == l);
}
