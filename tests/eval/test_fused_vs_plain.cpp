// The fused evaluation plan (`mnemo::compile`) against the naive reference evaluator
// (tests/support/reference_eval.hpp: a tree walk, triple-loop products, <cmath>), on
// losses, their gradients and second derivatives; float plans against double; repeated
// evaluation with new data; multi-output plans against single-output plans.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "support/fd.hpp"

namespace {

using namespace mnemo_test;
using fd::data_for;

/// Elementwise relative error, with entries smaller than 1e-3 of the largest compared at
/// that scale (different summation orders may not agree to 1e-12 on cancelled entries).
double rel_vs(const ref::tensor& got, const ref::tensor& want) {
    return fd::compare(got, want, 1e-3 * std::max(fd::max_abs(want), 1e-300)).err;
}

template <class P>
ref::tensor to_ref(const P& p) {
    return ref::from_xt(p);
}

/// Every output of `plan` (run on `ds`) against the reference evaluator: worst error.
template <class Plan, class Data, class... Es>
double plan_vs_reference(Plan& plan, Data& ds, Es... es) {
    const auto res = ds.run(plan);
    const ref::bindings b = ds.bindings();
    double worst = 0.0;
    std::size_t i = 0;
    auto one = [&](auto e, const auto& got) {
        const double err = rel_vs(to_ref(got), ref::evaluate(e, b));
        INFO("output " << i << ": " << mnemo::to_string(e).substr(0, 200) << "  rel err " << err);
        CHECK(err <= 1e-12);
        worst = std::max(worst, err);
        ++i;
    };
    std::apply([&](const auto&... got) { (one(es, got), ...); }, res);
    return worst;
}

constexpr std::size_t d = 8;
constexpr auto M = mnemo::matrix<"M", d, d>;
constexpr auto K = mnemo::matrix<"K", d, d>;
constexpr auto V = mnemo::matrix<"V", d, d>;
constexpr auto Q = mnemo::matrix<"Q", d, d>;
constexpr auto x = mnemo::vector<"x", d>;
constexpr auto eta = mnemo::scalar<"eta">;

constexpr auto titans_loss = mnemo::sum(mnemo::square(M * (K * x) - V * x));

using titans_data = data_for<M, K, V, Q, x, eta>;
titans_data make_titans_data(double phase) {
    titans_data ds;
    ds.set(M, 0.5 + phase, 0.1).set(K, 1.5 + phase, 0.3).set(V, 2.5 + phase, 0.3).set(Q, 3.5 + phase, 0.3);
    ds.set(x, 4.5 + phase, 1.0).set_value(eta, 0.1);
    return ds;
}

constexpr std::size_t din = 4, hid = 6, dout = 3;
constexpr auto W1 = mnemo::matrix<"W1", hid, din>;
constexpr auto W2 = mnemo::matrix<"W2", dout, hid>;
constexpr auto k = mnemo::vector<"k", din>;
constexpr auto v = mnemo::vector<"v", dout>;
constexpr auto U1 = mnemo::matrix<"U1", hid, din>;
constexpr auto mlp_loss = mnemo::sum(mnemo::square(W2 * mnemo::silu(W1 * k) - v));

using mlp_data = data_for<W1, W2, k, v, U1>;
mlp_data make_mlp_data(double phase) {
    mlp_data ds;
    ds.set(W1, 0.3 + phase, 0.8).set(W2, 1.3 + phase, 0.8).set(k, 2.3 + phase, 1.0).set(v, 3.3 + phase, 1.0);
    ds.set(U1, 4.3 + phase, 1.0);
    return ds;
}

}  // namespace

TEST_CASE("fused plan == reference: Titans inner loss and its gradients") {
    auto ds = make_titans_data(0.0);
    auto p = mnemo::compile<double>(titans_loss, mnemo::grad(titans_loss, M), mnemo::grad(titans_loss, K),
                                    mnemo::grad(titans_loss, V), mnemo::grad(titans_loss, x));
    const double worst = plan_vs_reference(p, ds, titans_loss, mnemo::grad(titans_loss, M),
                                           mnemo::grad(titans_loss, K), mnemo::grad(titans_loss, V),
                                           mnemo::grad(titans_loss, x));
    MESSAGE("titans: worst rel err plan vs reference " << worst);
}

TEST_CASE("fused plan == reference: MLP loss sum(square(W2 silu(W1 k) - v)) and its gradients") {
    auto ds = make_mlp_data(0.0);
    const auto g1 = mnemo::grad(mlp_loss, W1);
    const auto g2 = mnemo::grad(mlp_loss, W2);
    auto p = mnemo::compile<double>(mlp_loss, g1, g2, mnemo::grad(mlp_loss, k));
    const double worst = plan_vs_reference(p, ds, mlp_loss, g1, g2, mnemo::grad(mlp_loss, k));
    MESSAGE("mlp: worst rel err plan vs reference " << worst);
}

TEST_CASE("fused plan == reference: second derivatives") {
    SUBCASE("meta-gradient through one inner step (Titans)") {
        auto ds = make_titans_data(0.0);
        const auto M1 = M - eta * mnemo::grad(titans_loss, M);
        const auto outer_loss = mnemo::sum(mnemo::square(M1 * (Q * x) - x));
        auto p = mnemo::compile<double>(outer_loss, mnemo::grad(outer_loss, M), mnemo::grad(outer_loss, K),
                                        mnemo::grad(outer_loss, V), mnemo::grad(outer_loss, eta));
        const double worst =
            plan_vs_reference(p, ds, outer_loss, mnemo::grad(outer_loss, M), mnemo::grad(outer_loss, K),
                              mnemo::grad(outer_loss, V), mnemo::grad(outer_loss, eta));
        MESSAGE("titans meta-gradient: worst rel err plan vs reference " << worst);
    }
    SUBCASE("first-order meta-gradient (inner gradient under stop_gradient)") {
        auto ds = make_titans_data(0.0);
        const auto M1 = M - eta * mnemo::stop_gradient(mnemo::grad(titans_loss, M));
        const auto outer_loss = mnemo::sum(mnemo::square(M1 * (Q * x) - x));
        auto p = mnemo::compile<double>(outer_loss, mnemo::grad(outer_loss, M), mnemo::grad(outer_loss, Q),
                                        mnemo::grad(outer_loss, eta));
        const double worst = plan_vs_reference(p, ds, outer_loss, mnemo::grad(outer_loss, M),
                                               mnemo::grad(outer_loss, Q), mnemo::grad(outer_loss, eta));
        MESSAGE("stop_gradient meta-gradient: worst rel err plan vs reference " << worst);
    }
    SUBCASE("MLP Hessian-vector product and mixed derivative") {
        auto ds = make_mlp_data(0.0);
        const auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(mlp_loss, W1), U1));
        auto p = mnemo::compile<double>(mnemo::grad(phi, W1), mnemo::grad(phi, W2), mnemo::grad(phi, k));
        const double worst =
            plan_vs_reference(p, ds, mnemo::grad(phi, W1), mnemo::grad(phi, W2), mnemo::grad(phi, k));
        MESSAGE("mlp second derivatives: worst rel err plan vs reference " << worst);
    }
}

TEST_CASE("compile<float> matches compile<double> within 1e-5 (well-conditioned)") {
    // Well-conditioned: positive weights and inputs, so no sum cancels (W1 k in ~[1, 5],
    // W2 silu(W1 k) in ~[3, 25], v in [-0.3, 0.3]): float rounding is not amplified.
    mlp_data ds;
    ds.set(W1, 0.3, 0.3, 0.5).set(W2, 1.3, 0.3, 0.5).set(k, 2.3, 0.5, 1.0).set(v, 3.3, 0.3);
    const auto g1 = mnemo::grad(mlp_loss, W1);
    const auto g2 = mnemo::grad(mlp_loss, W2);
    auto pd = mnemo::compile<double>(mlp_loss, g1, g2);
    auto pf = mnemo::compile<float>(mlp_loss, g1, g2);
    auto [ld, g1d, g2d] = ds.run(pd);

    const xt::xtensor<float, 2> w1f = xt::cast<float>(ds[W1]), w2f = xt::cast<float>(ds[W2]);
    const xt::xtensor<float, 1> kf = xt::cast<float>(ds[k]), vf = xt::cast<float>(ds[v]);
    auto [lf, g1f, g2f] = pf(W1 = w1f, W2 = w2f, k = kf, v = vf);
    static_assert(std::is_same_v<decltype(lf), float>);

    // float data is the double data rounded: the results differ by rounding only.
    const double e0 = fd::rel_err(lf, ld, 1e-300);
    const double e1 = fd::compare(to_ref(g1f), to_ref(g1d), 1e-2 * fd::max_abs(to_ref(g1d))).err;
    const double e2 = fd::compare(to_ref(g2f), to_ref(g2d), 1e-2 * fd::max_abs(to_ref(g2d))).err;
    MESSAGE("float vs double: loss " << e0 << ", grad W1 " << e1 << ", grad W2 " << e2);
    CHECK(e0 <= 1e-5);
    CHECK(e1 <= 1e-5);
    CHECK(e2 <= 1e-5);

    SUBCASE("Titans loss and gradients in float") {
        auto dt = make_titans_data(0.0);
        auto qd = mnemo::compile<double>(titans_loss, mnemo::grad(titans_loss, K));
        auto qf = mnemo::compile<float>(titans_loss, mnemo::grad(titans_loss, K));
        auto [td, gkd] = dt.run(qd);
        const xt::xtensor<float, 2> mf = xt::cast<float>(dt[M]), kmf = xt::cast<float>(dt[K]),
                                    vmf = xt::cast<float>(dt[V]);
        const xt::xtensor<float, 1> xf = xt::cast<float>(dt[x]);
        auto [tf, gkf] = qf(M = mf, K = kmf, V = vmf, x = xf);
        CHECK(fd::rel_err(tf, td, 1e-300) <= 1e-5);
        CHECK(fd::compare(to_ref(gkf), to_ref(gkd), 1e-2 * fd::max_abs(to_ref(gkd))).err <= 1e-5);
    }
}

TEST_CASE("a plan evaluated twice with different data is right both times (no stale state)") {
    const auto M1 = M - eta * mnemo::grad(titans_loss, M);
    const auto outer_loss = mnemo::sum(mnemo::tanh(M1 * (Q * x) - x));
    const auto gK = mnemo::grad(outer_loss, K);
    auto p = mnemo::compile<double>(outer_loss, gK, mnemo::grad(titans_loss, M));

    auto d1 = make_titans_data(0.0);
    auto d2 = make_titans_data(1.0);
    d2.set_value(eta, 0.3);

    auto [l1, gk1_view, gm1_view] = d1.run(p);
    const ref::tensor gk1 = to_ref(gk1_view), gm1 = to_ref(gm1_view);  // views die at the next call
    auto [l2, gk2_view, gm2_view] = d2.run(p);
    const ref::tensor gk2 = to_ref(gk2_view), gm2 = to_ref(gm2_view);

    const ref::bindings b1 = d1.bindings(), b2 = d2.bindings();
    CHECK(fd::rel_err(l1, ref::evaluate(outer_loss, b1).value(), 1e-300) <= 1e-12);
    CHECK(fd::rel_err(l2, ref::evaluate(outer_loss, b2).value(), 1e-300) <= 1e-12);
    CHECK(rel_vs(gk1, ref::evaluate(gK, b1)) <= 1e-12);
    CHECK(rel_vs(gk2, ref::evaluate(gK, b2)) <= 1e-12);
    CHECK(rel_vs(gm1, ref::evaluate(mnemo::grad(titans_loss, M), b1)) <= 1e-12);
    CHECK(rel_vs(gm2, ref::evaluate(mnemo::grad(titans_loss, M), b2)) <= 1e-12);
    CHECK(std::fabs(l1 - l2) > 1e-3);  // the two data sets really differ

    // Back to the first data: bit-identical to the first call.
    auto [l3, gk3_view, gm3_view] = d1.run(p);
    CHECK(l3 == l1);
    CHECK(to_ref(gk3_view).data == gk1.data);
    CHECK(to_ref(gm3_view).data == gm1.data);

    // Scalars may be bound as plain numbers.
    auto [l4, gk4_view, gm4_view] = p(M = d1[M], K = d1[K], V = d1[V], Q = d1[Q], x = d1[x], eta = 0.1);
    CHECK(l4 == l1);
    CHECK(to_ref(gk4_view).data == gk1.data);
}

TEST_CASE("multi-output plans give the results of single-output plans") {
    auto ds = make_titans_data(0.0);
    const auto gM = mnemo::grad(titans_loss, M);
    const auto gK = mnemo::grad(titans_loss, K);
    const auto gV = mnemo::grad(titans_loss, V);
    auto all = mnemo::compile<double>(titans_loss, gM, gK, gV);
    auto [l, m, kk, vv] = ds.run(all);
    const ref::tensor m_all = to_ref(m), k_all = to_ref(kk), v_all = to_ref(vv);

    auto p0 = mnemo::compile<double>(titans_loss);
    auto p1 = mnemo::compile<double>(gM);
    auto p2 = mnemo::compile<double>(gK);
    auto p3 = mnemo::compile<double>(gV);
    auto [l_single] = ds.run(p0);
    auto [m_single] = ds.run(p1);
    auto [k_single] = ds.run(p2);
    auto [v_single] = ds.run(p3);
    // Same operations on the same data: equal up to the last bits (fused or stored
    // intermediates round the same way; only the grouping of sums could differ).
    CHECK(fd::rel_err(l, l_single, 1e-300) <= 1e-14);
    CHECK(rel_vs(to_ref(m_single), m_all) <= 1e-14);
    CHECK(rel_vs(to_ref(k_single), k_all) <= 1e-14);
    CHECK(rel_vs(to_ref(v_single), v_all) <= 1e-14);

    // The order of the outputs does not matter either.
    auto rev = mnemo::compile<double>(gV, gK, gM, titans_loss);
    auto [v_rev, k_rev, m_rev, l_rev] = ds.run(rev);
    CHECK(fd::rel_err(l, l_rev, 1e-300) <= 1e-14);
    CHECK(rel_vs(to_ref(m_rev), m_all) <= 1e-14);
    CHECK(rel_vs(to_ref(k_rev), k_all) <= 1e-14);
    CHECK(rel_vs(to_ref(v_rev), v_all) <= 1e-14);
}

TEST_CASE("a plan output that is a leaf (a symbol or a constant) is its value") {
    // grad of a linear term is a plain symbol; grad of c * s is a constant. Such an output
    // is given a buffer; it must hold the leaf's value, and the leaf's other users in the
    // same plan must still see the bound data.
    constexpr auto a = mnemo::vector<"a", 3>;
    constexpr auto w = mnemo::vector<"w", 3>;
    constexpr auto s = mnemo::scalar<"s">;
    const xt::xtensor<double, 1> av = {1.0, 2.0, 3.0}, wv = {4.0, 5.0, 6.0};

    const auto f = mnemo::dot(w, a);  // 4 + 10 + 18 = 32;  grad_w f = a
    auto p = mnemo::compile<double>(f, mnemo::grad(f, w));
    auto [fv, gw] = p(a = av, w = wv);
    CHECK(fv == 32.0);
    CHECK(ref::from_xt(gw).data == ref::from_xt(av).data);

    auto q = mnemo::compile<double>(a);
    auto [qa] = q(a = av);
    CHECK(ref::from_xt(qa).data == ref::from_xt(av).data);

    auto c = mnemo::compile<double>(mnemo::grad(mnemo::c<2> * s, s), s * s);  // 2 and s^2
    auto [two, s2] = c(s = 1.5);
    CHECK(two == 2.0);
    CHECK(s2 == 2.25);
}

TEST_CASE("a negation used twice is computed in each consumer's loop, not stored") {
    auto ds = make_titans_data(0.0);
    using mnemo::hadamard;
    // -M (of a leaf) has two elementwise consumers: not stored, and both results right.
    const auto e1 = mnemo::sum(hadamard(-M, K));
    const auto e2 = hadamard(-M, V) + Q;
    auto p = mnemo::compile<double>(e1, e2);
    CHECK(plan_vs_reference(p, ds, e1, e2) <= 1e-12);
    using G = decltype(p)::graph;
    CHECK_FALSE(G::facts.materialised[mnemo::detail::index_of_v<G::order, std::remove_cvref_t<decltype(-M)>>]);

    // The negation of an unstored chain is stored: recomputing it would repeat the chain.
    const auto n = -hadamard(M, K);
    const auto f1 = mnemo::sum(hadamard(n, V));
    const auto f2 = hadamard(n, Q);
    auto q = mnemo::compile<double>(f1, f2);
    CHECK(plan_vs_reference(q, ds, f1, f2) <= 1e-12);
    using H = decltype(q)::graph;
    CHECK(H::facts.materialised[mnemo::detail::index_of_v<H::order, std::remove_cvref_t<decltype(n)>>]);
}
