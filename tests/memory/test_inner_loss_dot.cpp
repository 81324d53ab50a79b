// The dot-product inner loss `-M(k) . v` (linear attention's objective: its inner gradient
// -v k^T does not depend on the memory) with the l1 outer loss, on a linear memory with const
// gates (d = 6, T = 8, eta 0.9, alpha 0.05, theta 0.05, the reference problems' values). Its
// meta-gradient against central finite differences of the loss: relative 1e-6 (floor 1e-6),
// sequential form and chunk 4, after checking that no point of any entry's
// finite-difference stencil changes the sign of any y - target (the kinks of l1). Also a derived property: since the inner gradient does not
// read the memory, the chunk size changes nothing (chunk 4 == chunk 1 to 1e-13).
// One memory type (double).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mm = seqtest::mm;
using spec_t = mm::spec<6, mm::linear<6>, mm::dot_loss, mm::titans_rule, mm::const_gates, mm::l1>;

TEST_CASE("dot_loss inner loss, l1 outer loss, const gates: meta-gradient equals finite differences") {
    seqtest::custom_problem<spec_t> p(8, 0.1);
    p.hyper[mm::const_gates::eta] = 0.9;
    p.hyper[mm::const_gates::alpha] = 0.05;
    p.hyper[mm::const_gates::theta] = 0.05;
    for (std::size_t chunk : {1, 4}) {
        CAPTURE(chunk);
        p.options.chunk = chunk;
        std::string first;
        const std::size_t crossings = seqtest::stencil_crossings(
            p, [](const seqtest::custom_problem<spec_t>& q) { return seqtest::outer_signs(q); }, first);
        MESSAGE("chunk " << chunk << ": min |y - target| " << seqtest::outer_margin(p) << "; " << crossings
                         << " stencils change the sign of a y - target " << first);
        REQUIRE(crossings == 0);
        const auto w = seqtest::fd_check(p, "dot_loss + l1, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}

TEST_CASE("dot_loss: the chunk size does not matter (the inner gradient does not read the memory)") {
    seqtest::custom_problem<spec_t> p(8, 0.1);
    p.hyper[mm::const_gates::eta] = 0.9;
    p.hyper[mm::const_gates::alpha] = 0.05;
    p.hyper[mm::const_gates::theta] = 0.05;
    typename seqtest::custom_problem<spec_t>::memory_type memory;
    const auto a = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, {.chunk = 1});
    const auto b = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, {.chunk = 4});
    seqtest::worst w;
    w.update(seqtest::scaled_err(double(a.loss), double(b.loss)), "loss");
    w.update(seqtest::scaled_err(seqtest::flat(a.outputs), seqtest::flat(b.outputs)), "outputs");
    w.update(seqtest::compare_params(a.grads, b.grads), "grad ");
    MESSAGE("dot_loss, chunk 4 vs chunk 1: worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-13);
}
