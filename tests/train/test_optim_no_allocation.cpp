// An optimizer's step allocates nothing: its buffers are made by its constructor. This
// executable replaces the global operator new to count heap allocations.
#include <doctest/doctest.h>

#include "support/count_allocations.hpp"

#include <mnemo/train.hpp>
#include <xtensor/xtensor.hpp>

using mnemo_test::allocations;
namespace tr = mnemo::train;

TEST_CASE("AdamW and SGD steps allocate nothing") {
    xt::xtensor<double, 2> w({16, 8}), gw({16, 8});
    xt::xtensor<double, 0> b, gb;
    w.fill(0.5);
    gw.fill(0.1);
    b() = 1.0;
    gb() = -0.2;
    tr::tensor_list<double> p, g;
    p.add("W", w).add("b", b);
    g.add("W", gw).add("b", gb);
    tr::adamw<double> adam(p, {}, {.clip_norm = 0.01, .lr_schedule = {.warmup = 2, .total = 10}, .frozen = {"b"}});
    tr::sgd<double> sgd(p, {.nesterov = true});
    adam.step(g, 1.0);
    sgd.step(g, 1.0);
    const long before = allocations.load();
    for (int i = 0; i < 5; ++i) {
        adam.step(g, 1.0);
        sgd.step(g);
    }
    CHECK(allocations.load() - before == 0);
    CHECK(adam.steps() == 6);
}
