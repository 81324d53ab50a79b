// The reference problem `seq_gated`: its meta-gradient against central finite differences
// of its own outer loss, on every entry of every meta-parameter.
#include <doctest/doctest.h>

#include "examples/reference_problems.hpp"
#include "support/memory_fd.hpp"

TEST_CASE("reference problem seq_gated: meta-gradient equals finite differences") {
    auto p = reference::make_seq_gated();
    typename decltype(p)::memory_type memory;
    const auto r = p.meta_gradient(memory);
    CHECK(std::isfinite(r.loss));
    CHECK(r.loss == doctest::Approx(p.loss(memory)).epsilon(1e-14));
    const auto worst = memfd::check_all(p.params, r.grads, [&] { return double(p.loss(memory)); }, 1e-6);
    MESSAGE("worst relative error " << worst.err << " at " << worst.where);
    CHECK(worst.err <= 1e-6);
}
