// A layer-normalised residual MLP memory, `M(k) = ln_scale * normalise(k + W2 silu(W1 k))`
// (d = 4, hidden 8); `ln_scale` is a meta-parameter, set to 1 + det(9.5, 0.2). Data gates
// (theta_max 0.1), T = 8, the reference problems' values (M0 scaled by 0.3). Its
// meta-gradient (ln_scale included) against central finite differences of its loss:
// relative 1e-6 (floor 1e-6), sequential form and chunk 4. One memory type (double).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mm = seqtest::mm;
using model_t = mm::layer_norm<mm::linear<4>>;
using spec_t = mm::spec<4, model_t, mm::l2_loss, mm::titans_rule, mm::data_gates<4>, mm::mse>;

TEST_CASE("layer_norm<linear> memory: meta-gradient (with ln_scale) equals finite differences") {
    seqtest::custom_problem<spec_t> p(8, 0.3);
    p.hyper[mm::data_gates<4>::theta_max] = 0.1;
    using P = decltype(p.params);
    static_assert(P::has(model_t::scale), "ln_scale is a meta-parameter");
    CHECK(p.params[model_t::scale](0) == doctest::Approx(1.0 + seqtest::det(0, 9.5, 0.2)).epsilon(1e-15));
    for (std::size_t chunk : {1, 4}) {
        p.options.chunk = chunk;
        const auto w = seqtest::fd_check(p, "layer_norm<linear>, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}
