// The initialisers: reproducible by (seed, name), independent of the order of the tensors,
// with the moments they promise, and refusing what they cannot do before writing anything.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>

#include <mnemo/train.hpp>
#include "support/message_of.hpp"
#include <xtensor/xtensor.hpp>

namespace tr = mnemo::train;
using mnemo_test::message_of;

namespace {

struct moments {
    double mean = 0, std = 0, min = INFINITY, max = -INFINITY;
};
template <class Tensor>
moments moments_of(const Tensor& t) {
    moments m;
    for (double v : t) {
        m.mean += v;
        m.min = std::min(m.min, v);
        m.max = std::max(m.max, v);
    }
    m.mean /= double(t.size());
    for (double v : t) m.std += (v - m.mean) * (v - m.mean);
    m.std = std::sqrt(m.std / double(t.size()));
    return m;
}

}  // namespace

TEST_CASE("the same seed gives the same values, whatever the order of the tensors") {
    xt::xtensor<double, 2> a1({8, 5}), b1({4, 4}), a2({8, 5}), b2({4, 4}), a3({8, 5});
    tr::tensor_list<double> first, second, other_seed;
    first.add("A", a1).add("B", b1);
    second.add("B", b2).add("A", a2);
    other_seed.add("A", a3);
    const std::vector<tr::init_rule> rules = {{"*", tr::normal{0.0, 1.0}}};
    tr::initialize(first, 42, rules);
    tr::initialize(second, 42, rules);
    tr::initialize(other_seed, 43, rules);
    CHECK(std::memcmp(a1.data(), a2.data(), a1.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(b1.data(), b2.data(), b1.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a1.data(), a3.data(), a1.size() * sizeof(double)) != 0);
    // Two tensors of one run draw from different streams.
    CHECK(a1(0, 0) != b1(0, 0));
}

TEST_CASE("the moments: normal, Xavier normal and uniform") {
    // 256 x 128 = 32768 values: the sample std is within about 0.4% (1 sigma) of the true one.
    xt::xtensor<double, 2> n({256, 128}), xn({256, 128}), xu({256, 128});
    tr::tensor_list<double> l;
    l.add("n", n).add("xn", xn).add("xu", xu);
    tr::initialize(l, 7, {{"n", tr::normal{0.5, 2.0}}, {"xn", tr::xavier_normal{2.0}}, {"xu", tr::xavier_uniform{}}});
    const auto mn = moments_of(n), mxn = moments_of(xn), mxu = moments_of(xu);
    CHECK(mn.mean == doctest::Approx(0.5).epsilon(0.05));
    CHECK(mn.std == doctest::Approx(2.0).epsilon(0.02));
    // Xavier: fan_in = 128, fan_out = 256.
    CHECK(mxn.std == doctest::Approx(2.0 * std::sqrt(2.0 / 384)).epsilon(0.02));
    CHECK(std::abs(mxn.mean) < 0.01);
    const double a = std::sqrt(6.0 / 384);
    CHECK(mxu.min >= -a);
    CHECK(mxu.max < a);
    CHECK(mxu.min < -0.99 * a);  // the whole range is used
    CHECK(mxu.std == doctest::Approx(a / std::sqrt(3.0)).epsilon(0.02));
}

TEST_CASE("rules: first match wins, prefixes, constants, untouched tensors") {
    xt::xtensor<double, 2> w1({3, 3}), w2({3, 3});
    xt::xtensor<double, 0> b;
    xt::xtensor<double, 1> keep = {7.0, 8.0};
    tr::tensor_list<double> l;
    l.add("layer1.W", w1).add("layer2.W", w2).add("layer1.b", b).add("keep", keep);
    tr::initialize(l, 1, {{"layer1.b", tr::constant{-2.0}}, {"layer1.*", tr::zeros{}}, {"layer2.*", tr::constant{3.0}}});
    for (double v : w1) CHECK(v == 0.0);
    for (double v : w2) CHECK(v == 3.0);
    CHECK(b() == -2.0);
    CHECK(keep(0) == 7.0);
    CHECK(keep(1) == 8.0);
}

TEST_CASE("what cannot be done is refused before anything is written") {
    xt::xtensor<double, 2> w({3, 3});
    xt::xtensor<double, 1> v(std::array<std::size_t, 1>{3});
    w.fill(1.0);
    v.fill(1.0);
    tr::tensor_list<double> l;
    l.add("W", w).add("wa", v);
    CHECK(message_of([&] { tr::initialize(l, 1, {{"W", tr::zeros{}}, {"WX", tr::zeros{}}}); }) ==
          "mnemo: the initialisation rule 'WX' matches no tensor (the tensors are W, wa)");
    CHECK(message_of([&] { tr::initialize(l, 1, {{"W", tr::zeros{}}, {"wa", tr::xavier_normal{}}}); }) ==
          "mnemo: cannot initialise 'wa' (3,): Xavier initialisation needs a tensor of rank 2 or more");
    CHECK(message_of([&] { tr::initialize(l, 1, {{"*", tr::normal{0.0, -1.0}}}); }).find("std >= 0") !=
          std::string::npos);
    for (double x : w) CHECK(x == 1.0);
    for (double x : v) CHECK(x == 1.0);
}
