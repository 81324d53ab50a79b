// A layer's forward and backward, and meta_gradient into a kept result, allocate nothing
// once warm (the same sizes again): the dual form and the compiled steps, sequential and
// chunked. This executable replaces the global operator new to count heap allocations.
#include <doctest/doctest.h>

#include "support/count_allocations.hpp"

#include "examples/reference_problems.hpp"

using mnemo_test::allocations;

TEST_CASE("the layer allocates nothing once warm") {
    namespace mm = mnemo::memory;
    using memory_type = mm::sequence_memory<reference::linear_data<8>, float>;
    auto ref = reference::make_seq_gated<float>();
    xt::xtensor<float, 3> tokens(std::array<std::size_t, 3>{2, 16, 8});
    reference::fill_det(tokens, 4.5, 1.0);
    xt::xtensor<float, 3> dY(std::array<std::size_t, 3>{2, 16, 8});
    reference::fill_det(dY, 9.5, 0.1);
    memory_type memory;
    memory_type::context ctx;
    memory_type::layer_gradients g;
    memory_type::result r;
    // (No structured bindings: clang 14 cannot capture them in doctest's CAPTURE lambdas.)
    for (const auto& config : {std::pair{1, true}, std::pair{1, false}, std::pair{4, true}, std::pair{4, false}}) {
        const int chunk = config.first;
        const bool dual = config.second;
        CAPTURE(chunk);
        CAPTURE(dual);
        mm::run_options opt;
        opt.chunk = std::size_t(chunk);
        opt.dual_form = dual;
        opt.token_gradient = true;
        for (int warm = 0; warm < 2; ++warm) {
            memory.forward(ctx, ref.params, ref.hyper, tokens, opt);
            memory.backward(ctx, dY, g);
            memory.meta_gradient(r, ref.params, ref.hyper, tokens, tokens, opt);
        }
        const long before = allocations.load();
        for (int i = 0; i < 3; ++i) {
            memory.forward(ctx, ref.params, ref.hyper, tokens, opt);
            memory.backward(ctx, dY, g);
            memory.meta_gradient(r, ref.params, ref.hyper, tokens, tokens, opt);
        }
        CHECK(allocations.load() - before == 0);
        CHECK(std::isfinite(float(g.tokens(1, 15, 7))));
    }
    // The counter does count: a std::vector allocates.
    const long mark = allocations.load();
    std::vector<double> v(100, 1.0);
    CHECK(allocations.load() - mark >= 1);
    CHECK(v[99] == 1.0);
}
