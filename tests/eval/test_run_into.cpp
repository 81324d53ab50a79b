// plan::run_unchecked_into writes chosen results to given places instead of the arena.
//
// A momentum step written as expressions: S' = eta S - theta (M k - v) k^T, M' = (1 - a) M +
// S' (a result read by another result), the retrieval loss, S' asked for twice (one node,
// two results) and M itself (a leaf result). Written into destinations, every result must
// be bit-identical to the same evaluation in the arena; results without a destination stay
// in the arena; a later plain evaluation uses the arena again.
#include <doctest/doctest.h>

#include <type_traits>
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
    std::vector<double> m, s, k, v, q;
    double eta = 0.9, theta = 0.3, a = 0.05;
    data() : m(n * n), s(n * n), k(n), v(n), q(n) {
        for (std::size_t i = 0; i < n * n; ++i) {
            m[i] = 0.1 * double(i % 7) - 0.3;
            s[i] = 0.05 * double(i % 5) - 0.1;
        }
        for (std::size_t i = 0; i < n; ++i) {
            k[i] = 0.2 * double(i) - 0.4;
            v[i] = 0.3 - 0.1 * double(i);
            q[i] = 0.15 * double(i % 3) + 0.1;
        }
    }
    template <class Sym>
    const double* pointer() const {
        if constexpr (is<Sym, decltype(M)>) return m.data();
        else if constexpr (is<Sym, decltype(S)>) return s.data();
        else if constexpr (is<Sym, decltype(k)>) return k.data();
        else if constexpr (is<Sym, decltype(v)>) return v.data();
        else if constexpr (is<Sym, decltype(q)>) return q.data();
        else if constexpr (is<Sym, decltype(eta)>) return &eta;
        else if constexpr (is<Sym, decltype(theta)>) return &theta;
        else return &a;
    }
    template <class Plan, class... Syms>
    typename Plan::pointers pointers(mnemo::detail::list<Syms...>) const {
        return {pointer<Syms>()...};
    }
};

}  // namespace

TEST_CASE("results written into given places equal the arena's, bit for bit") {
    auto plan = mnemo::compile<double>(S1, M1, loss, S1, M);
    using plan_t = decltype(plan);
    const data x;
    const auto ptrs = x.pointers<plan_t>(typename plan_t::graph::symbols{});

    plan.run_unchecked(ptrs);
    const std::vector<double> s1(plan.data<0>(), plan.data<0>() + n * n), m1(plan.data<1>(), plan.data<1>() + n * n);
    const double l = *plan.data<2>();
    // The control: the step changes the memory (a test that cannot fail would not).
    CHECK(m1 != x.m);

    std::vector<double> s_out(n * n, -1.0), m_out(n * n, -1.0), s_again(n * n, -1.0), m_leaf(n * n, -1.0);
    plan.run_unchecked_into(ptrs, {s_out.data(), m_out.data(), nullptr, s_again.data(), m_leaf.data()});
    CHECK(s_out == s1);
    CHECK(m_out == m1);
    CHECK(s_again == s1);
    CHECK(m_leaf == x.m);
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
