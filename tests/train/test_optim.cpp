// The optimizers against closed forms (constant gradients), clipping, the schedule,
// freezing, and what they refuse: bad constants, a frozen name that is not a parameter,
// gradients of another layout, a non-finite loss or gradient (the step is refused and
// nothing changes).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <mnemo/train.hpp>
#include "support/message_of.hpp"
#include <xtensor/xtensor.hpp>

namespace tr = mnemo::train;
using mnemo_test::message_of;

namespace {

struct two_tensors {
    xt::xtensor<double, 2> W = xt::xtensor<double, 2>(std::array<std::size_t, 2>{3, 4});
    xt::xtensor<double, 0> b;
    tr::tensor_list<double> list() {
        tr::tensor_list<double> l;
        l.add("W", W).add("b", b);
        return l;
    }
};

void fill(two_tensors& t, double w, double b) {
    for (std::size_t k = 0; k < t.W.size(); ++k) t.W.data()[k] = w * (1.0 + 0.1 * double(k)) * (k % 2 ? -1 : 1);
    t.b() = b;
}

bool same_bits(const two_tensors& a, const two_tensors& b) {
    for (std::size_t k = 0; k < a.W.size(); ++k)
        if (std::memcmp(&a.W.data()[k], &b.W.data()[k], sizeof(double)) != 0) return false;
    return std::memcmp(&a.b(), &b.b(), sizeof(double)) == 0;
}

}  // namespace

TEST_CASE("AdamW with a constant gradient follows its closed form") {
    // With g constant, m_t / (1 - beta1^t) = g and v_t / (1 - beta2^t) = g^2 exactly (up to
    // rounding), so each step is p <- (1 - lr wd) p - lr g / (|g| + eps).
    const double lr = 0.01, wd = 0.1, eps = 1e-8;
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    fill(g, 0.3, 2.0);
    two_tensors expect = p;
    tr::adamw<double> opt(p.list(), {.lr = lr, .beta1 = 0.8, .beta2 = 0.99, .eps = eps, .weight_decay = wd});
    auto grads = g.list();
    for (int t = 1; t <= 20; ++t) {
        opt.step(grads);
        for (std::size_t k = 0; k < p.W.size(); ++k) {
            const double gk = g.W.data()[k];
            expect.W.data()[k] = (1 - lr * wd) * expect.W.data()[k] - lr * gk / (std::abs(gk) + eps);
        }
        expect.b() = (1 - lr * wd) * expect.b() - lr * g.b() / (std::abs(g.b()) + eps);
    }
    CHECK(opt.steps() == 20);
    for (std::size_t k = 0; k < p.W.size(); ++k) CHECK(p.W.data()[k] == doctest::Approx(expect.W.data()[k]).epsilon(1e-12));
    CHECK(p.b() == doctest::Approx(expect.b()).epsilon(1e-12));
    // Its state: m_t = (1 - beta1^t) g.
    const auto& m = opt.state().at("adamw.m.b");
    CHECK(m.data[0] == doctest::Approx((1 - std::pow(0.8, 20)) * 2.0).epsilon(1e-12));
    CHECK(opt.state().names_string() == "adamw.m.W, adamw.m.b, adamw.v.W, adamw.v.b");
}

TEST_CASE("SGD with momentum and a constant gradient follows its closed form") {
    // b_t = g (1 - mu^t) / (1 - mu); plain: p_t = p_0 - lr sum_s b_s; Nesterov: the step is
    // g + mu b_t.
    for (bool nesterov : {false, true}) {
        CAPTURE(nesterov);
        const double lr = 0.05, mu = 0.7;
        two_tensors p, g;
        fill(p, 0.5, -0.25);
        fill(g, 0.3, 2.0);
        two_tensors p0 = p;
        tr::sgd<double> opt(p.list(), {.lr = lr, .momentum = mu, .nesterov = nesterov});
        auto grads = g.list();
        double total = 0;  // sum over the steps of the step's multiple of g
        for (int t = 1; t <= 15; ++t) {
            opt.step(grads);
            const double b = (1 - std::pow(mu, t)) / (1 - mu);
            total += nesterov ? 1 + mu * b : b;
        }
        for (std::size_t k = 0; k < p.W.size(); ++k)
            CHECK(p.W.data()[k] == doctest::Approx(p0.W.data()[k] - lr * total * g.W.data()[k]).epsilon(1e-12));
        CHECK(p.b() == doctest::Approx(p0.b() - lr * total * g.b()).epsilon(1e-12));
    }
}

TEST_CASE("clipping scales every gradient by clip / global norm") {
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    fill(g, 0.3, 2.0);
    double sq = g.b() * g.b();
    for (double v : g.W) sq += v * v;
    const double norm = std::sqrt(sq), clip = 0.5;
    two_tensors p0 = p;
    tr::sgd<double> opt(p.list(), {.lr = 0.1, .momentum = 0}, {.clip_norm = clip});
    opt.step(g.list());
    CHECK(opt.last_grad_norm() == doctest::Approx(norm).epsilon(1e-14));
    for (std::size_t k = 0; k < p.W.size(); ++k)
        CHECK(p.W.data()[k] == doctest::Approx(p0.W.data()[k] - 0.1 * clip / norm * g.W.data()[k]).epsilon(1e-13));
    CHECK(p.b() == doctest::Approx(p0.b() - 0.1 * clip / norm * g.b()).epsilon(1e-13));
    // Under the threshold nothing is scaled.
    two_tensors q = p0;
    tr::sgd<double> wide(q.list(), {.lr = 0.1, .momentum = 0}, {.clip_norm = 10 * norm});
    wide.step(g.list());
    CHECK(q.b() == doctest::Approx(p0.b() - 0.1 * g.b()).epsilon(1e-14));
}

TEST_CASE("the schedule: linear warm-up, then cosine to min_factor") {
    const tr::schedule s{.warmup = 4, .total = 14, .min_factor = 0.1};
    CHECK(s.factor(0) == doctest::Approx(0.25).epsilon(1e-15));
    CHECK(s.factor(3) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(s.factor(4) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(s.factor(9) == doctest::Approx(0.1 + 0.9 * 0.5).epsilon(1e-15));  // half way: cos = 0
    CHECK(s.factor(14) == doctest::Approx(0.1).epsilon(1e-15));
    CHECK(s.factor(100) == doctest::Approx(0.1).epsilon(1e-15));
    CHECK(tr::schedule{}.factor(7) == 1.0);
    // The optimizer's step s uses factor(s - 1): SGD without momentum moves by lr factor g.
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    fill(g, 0.3, 2.0);
    tr::sgd<double> opt(p.list(), {.lr = 0.2, .momentum = 0}, {.lr_schedule = s});
    for (std::size_t t = 0; t < 6; ++t) {
        const double before = p.b();
        CHECK(opt.learning_rate() == doctest::Approx(0.2 * s.factor(t)).epsilon(1e-15));
        opt.step(g.list());
        CHECK(p.b() == doctest::Approx(before - 0.2 * s.factor(t) * g.b()).epsilon(1e-14));
    }
}

TEST_CASE("a frozen parameter gets no update, and no decay") {
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    fill(g, 0.3, 2.0);
    const two_tensors p0 = p;
    tr::adamw<double> opt(p.list(), {.lr = 0.1, .weight_decay = 0.5}, {.frozen = {"W"}});
    CHECK(opt.is_frozen(0));
    CHECK_FALSE(opt.is_frozen(1));
    g.W.fill(std::nan(""));  // a frozen gradient is not read
    opt.step(g.list());
    for (std::size_t k = 0; k < p.W.size(); ++k) CHECK(p.W.data()[k] == p0.W.data()[k]);
    CHECK(p.b() != p0.b());
    // The clipping norm leaves frozen gradients out.
    CHECK(opt.last_grad_norm() == doctest::Approx(2.0).epsilon(1e-15));
}

TEST_CASE("out-of-range constants and unknown frozen names are refused, naming the value") {
    two_tensors p;
    const auto l = p.list();
    CHECK(message_of([&] { tr::adamw<double>(l, {.lr = 0}); }) ==
          "mnemo: adamw: the learning rate must be finite and > 0, not 0.000000");
    CHECK(message_of([&] { tr::adamw<double>(l, {.lr = std::nan("")}); }).find("learning rate") != std::string::npos);
    CHECK(message_of([&] { tr::adamw<double>(l, {.beta1 = 1.0}); }) == "mnemo: adamw: beta1 = 1.000000 is out of range [0, 1)");
    CHECK(message_of([&] { tr::adamw<double>(l, {.beta2 = -0.1}); }) ==
          "mnemo: adamw: beta2 = -0.100000 is out of range [0, 1)");
    CHECK(message_of([&] { tr::adamw<double>(l, {.eps = 0}); }).find("eps") != std::string::npos);
    CHECK(message_of([&] { tr::adamw<double>(l, {.weight_decay = -1}); }).find("weight_decay") != std::string::npos);
    CHECK(message_of([&] { tr::sgd<double>(l, {.momentum = 1.0}); }) == "mnemo: sgd: momentum = 1.000000 is out of range [0, 1)");
    CHECK(message_of([&] { tr::sgd<double>(l, {.momentum = 0, .nesterov = true}); }).find("nesterov") != std::string::npos);
    CHECK(message_of([&] { tr::sgd<double>(l, {}, {.clip_norm = -1}); }).find("clip_norm") != std::string::npos);
    CHECK(message_of([&] { tr::sgd<double>(l, {}, {.lr_schedule = {.warmup = 10, .total = 10}}); }) ==
          "mnemo: schedule: warmup = 10 steps is not shorter than total = 10");
    CHECK(message_of([&] { tr::sgd<double>(l, {}, {.lr_schedule = {.min_factor = 2}}); }).find("min_factor") !=
          std::string::npos);
    CHECK(message_of([&] { tr::adamw<double>(l, {}, {.frozen = {"WX"}}); }) ==
          "mnemo: adamw: the frozen name 'WX' is not a parameter (the parameters are W, b)");
}

TEST_CASE("gradients of another layout are refused before any update") {
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    const two_tensors p0 = p;
    tr::adamw<double> opt(p.list());
    xt::xtensor<double, 2> wrong(std::array<std::size_t, 2>{4, 3});
    tr::tensor_list<double> swapped, reshaped, fewer;
    swapped.add("b", g.b).add("W", g.W);
    reshaped.add("W", wrong).add("b", g.b);
    fewer.add("W", g.W);
    CHECK(message_of([&] { opt.step(swapped); }) ==
          "mnemo: the gradients do not match the parameters: entry 0 is 'b', expected 'W'");
    CHECK(message_of([&] { opt.step(reshaped); }) ==
          "mnemo: the gradients do not match the parameters: 'W' has shape (4, 3), expected (3, 4)");
    CHECK(message_of([&] { opt.step(fewer); }) ==
          "mnemo: the gradients do not match the parameters: 1 tensors, expected 2 (W, b)");
    CHECK(opt.steps() == 0);
    CHECK(same_bits(p, p0));
}

TEST_CASE("a non-finite loss or gradient refuses the step and changes nothing") {
    two_tensors p, g;
    fill(p, 0.5, -0.25);
    fill(g, 0.3, 2.0);
    tr::adamw<double> opt(p.list(), {.lr = 0.01});
    opt.step(g.list(), 1.0);
    opt.step(g.list(), 1.0);
    const two_tensors p2 = p;
    const std::vector<double> m(opt.state()[0].data, opt.state()[0].data + opt.state()[0].size);

    g.W(1, 2) = std::numeric_limits<double>::infinity();
    try {
        opt.step(g.list(), 1.0);
        FAIL("no exception");
    } catch (const tr::non_finite_error& e) {
        CHECK(e.step == 3);
        CHECK(std::string(e.what()) ==
              "mnemo: step 3 refused: the gradient of 'W' is inf at entry 6; the parameters and the optimizer's "
              "state are unchanged");
    }
    g.W(1, 2) = 0.5;
    try {
        opt.step(g.list(), std::nan(""));
        FAIL("no exception");
    } catch (const tr::non_finite_error& e) {
        CHECK(e.step == 3);
        CHECK(std::string(e.what()).find("the loss is nan") != std::string::npos);
    }
    CHECK(opt.steps() == 2);
    CHECK(same_bits(p, p2));
    for (std::size_t k = 0; k < m.size(); ++k) CHECK(opt.state()[0].data[k] == m[k]);
    // And training goes on from there.
    opt.step(g.list(), 1.0);
    CHECK(opt.steps() == 3);
    CHECK_FALSE(same_bits(p, p2));
}

TEST_CASE("float parameters") {
    xt::xtensor<float, 1> w = {1.0f, -2.0f}, gw = {0.5f, 0.5f};
    tr::tensor_list<float> p, g;
    p.add("w", w);
    g.add("w", gw);
    tr::adamw<float> opt(p, {.lr = 0.1, .weight_decay = 0});
    opt.step(g);
    // The first Adam step is lr sign(g) (up to eps).
    CHECK(w(0) == doctest::Approx(0.9).epsilon(1e-6));
    CHECK(w(1) == doctest::Approx(-2.1).epsilon(1e-6));
}

TEST_CASE("tensor_list: names, prefixes, duplicates") {
    two_tensors a, b;
    tr::tensor_list<double> l;
    l.add(a.list(), "layer1.").add(b.list(), "layer2.");
    CHECK(l.names_string() == "layer1.W, layer1.b, layer2.W, layer2.b");
    CHECK(l.values() == 26);
    CHECK(l.at("layer2.W").data == b.W.data());
    CHECK(l.at("layer1.b").shape.empty());
    CHECK(message_of([&] { l.add("layer1.W", a.W); }) == "mnemo: two tensors named 'layer1.W'");
    CHECK(message_of([&] { (void)l.at("W"); }).find("no tensor named 'W'") != std::string::npos);
    CHECK(tr::shape_string({3, 4}) == "(3, 4)");
    CHECK(tr::shape_string({5}) == "(5,)");
    CHECK(tr::shape_string({}) == "()");
}
