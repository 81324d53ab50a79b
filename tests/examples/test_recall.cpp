// The recall demo's pieces (examples/recall/recall.hpp): the task, its outer loss and dL/dY
// against finite differences, and short runs of training: the loss falls, a run is
// reproducible, frozen parameters stay bit for bit where they started, and the layer's
// gradient buffers (which the optimizer's views point into) keep their place.
#include <doctest/doctest.h>

#include <cstring>

#include "examples/recall/recall.hpp"

namespace recall {
template outcome train<false>(const config&, variant, const progress_fn&);
}

TEST_CASE("the task: writes [key; value], then queries [key; 0] in another order") {
    recall::tr::random_stream rng(5);
    recall::batch b;
    recall::make_batch(rng, 3, 6, b);
    REQUIRE(b.tokens.shape() == std::array<std::size_t, 3>{3, 12, recall::d});
    for (std::size_t s = 0; s < 3; ++s) {
        std::vector<bool> seen(6, false);
        for (std::size_t j = 0; j < 6; ++j) {
            const std::size_t i = b.asked[s * 6 + j];
            REQUIRE(i < 6);
            CHECK_FALSE(seen[i]);  // each pair is asked once
            seen[i] = true;
            for (std::size_t c = 0; c < recall::key_size; ++c) {
                CHECK(b.tokens(s, 6 + j, c) == b.tokens(s, i, c));  // the key of pair i
                CHECK(b.tokens(s, 6 + j, recall::key_size + c) == 0.0);
                CHECK(b.tokens(s, i, recall::key_size + c) == b.values(s, i, c));
            }
        }
        double n = 0;
        for (std::size_t c = 0; c < recall::key_size; ++c) n += b.values(s, 0, c) * b.values(s, 0, c);
        CHECK(n == doctest::Approx(1.0).epsilon(1e-12));
    }
}

TEST_CASE("dL/dY of the outer loss: zero at the writes, central differences at the queries") {
    recall::tr::random_stream rng(9);
    recall::batch b;
    recall::make_batch(rng, 2, 4, b);
    xt::xtensor<double, 3> Y(std::array<std::size_t, 3>{2, 8, recall::key_size}), dY, scratch;
    for (auto& y : Y) y = rng.normal();
    recall::query_loss(b, Y, dY);
    double worst = 0;
    for (std::size_t k = 0; k < Y.size(); ++k) {
        const double h = 1e-5, y0 = Y.data()[k];
        Y.data()[k] = y0 + h;
        const double up = recall::query_loss(b, Y, scratch);
        Y.data()[k] = y0 - h;
        const double down = recall::query_loss(b, Y, scratch);
        Y.data()[k] = y0;
        const double fd = (up - down) / (2 * h);
        worst = std::max(worst, std::abs(fd - dY.data()[k]));
        const std::size_t t = (k / recall::key_size) % 8;
        if (t < 4) CHECK(dY.data()[k] == 0.0);
    }
    CHECK(worst < 1e-10);  // the loss is quadratic: the central difference is exact up to rounding
}

TEST_CASE("a short training run: the loss falls, reproducibly; frozen stays frozen") {
    recall::config cfg;
    // (The loss stays near its plateau of 1/16, the loss of an answer 0, for some hundred
    // steps before it falls: examples/recall's training curve. A larger learning rate than
    // the demo's leaves it sooner.)
    cfg.steps = 600;
    cfg.lr = 1e-2;
    cfg.warmup = 20;
    cfg.max_pairs = 4;
    cfg.eval_sequences = 32;
    cfg.eval_pairs = {2, 4};
    cfg.threads = 2;
    const auto full = recall::train<false>(cfg, recall::variant::full);
    auto mean = [](const std::vector<double>& v, std::size_t from, std::size_t to) {
        double s = 0;
        for (std::size_t i = from; i < to; ++i) s += v[i];
        return s / double(to - from);
    };
    REQUIRE(full.loss.size() == 600);
    for (double l : full.loss) REQUIRE(std::isfinite(l));
    CHECK(mean(full.loss, 550, 600) < 0.25 * mean(full.loss, 0, 50));
    CHECK(full.scores.at(2).accuracy > 0.9);

    const auto again = recall::train<false>(cfg, recall::variant::full);
    CHECK(std::memcmp(full.loss.data(), again.loss.data(), full.loss.size() * sizeof(double)) == 0);

    const auto frozen = recall::train<false>(cfg, recall::variant::frozen_kv);
    recall::parameters start;
    recall::initialise(start, cfg.seed);
    auto same = [](const auto& a, const auto& b) { return std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0; };
    CHECK(same(frozen.params.get<"WK">(), start.get<"WK">()));
    CHECK(same(frozen.params.get<"WV">(), start.get<"WV">()));
    CHECK_FALSE(same(frozen.params.get<"WQ">(), start.get<"WQ">()));
    CHECK_FALSE(same(full.params.get<"WK">(), start.get<"WK">()));
}

TEST_CASE("the optimizer's views into the layer's gradients stay valid across backwards") {
    recall::memory<false> mem;
    recall::memory<false>::context ctx;
    recall::memory<false>::layer_gradients g;
    recall::parameters p;
    recall::initialise(p, 3);
    recall::hyperparameters h;
    h[recall::mm::data_gates<recall::d>::theta_max] = 1.0;
    recall::tr::tensor_list<double> grads;
    grads.add(g.grads);
    std::vector<const double*> where;
    for (const auto& v : grads) where.push_back(v.data);
    recall::tr::random_stream rng(4);
    recall::batch b;
    xt::xtensor<double, 3> dY;
    for (int call = 0; call < 3; ++call) {
        recall::make_batch(rng, 2, 3, b);
        const auto& Y = mem.forward(ctx, p, h, b.tokens, {});
        recall::query_loss(b, Y, dY);
        mem.backward(ctx, dY, g);
        std::size_t i = 0;
        g.grads.for_each([&](const std::string& name, const auto& t) {
            CAPTURE(name);
            CHECK(t.data() == where[i++]);
        });
        CHECK(grads.at("WK").data[0] == g.grads.get<"WK">().data()[0]);
    }
}
