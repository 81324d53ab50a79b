// Non-Titans update rules on a linear memory with data gates (d = 6, T = 8, the reference
// problems' values, theta_max 0.1):
//   - normalized_momentum_rule: `S = eta S - theta g, M = (1 - alpha) M + theta S / ||S||`;
//   - delta_rule: `M = (1 - alpha) M - theta g` (no surprise; eta's gate weights are then not
//     meta-parameters at all, checked).
// Meta-gradients against central finite differences of the loss: relative 1e-6 (floor 1e-6),
// sequential form and chunk 4. Two memory types (double).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mm = seqtest::mm;
using momentum_spec = mm::spec<6, mm::linear<6>, mm::l2_loss, mm::normalized_momentum_rule, mm::data_gates<6>, mm::mse>;
using delta_spec = mm::spec<6, mm::linear<6>, mm::l2_loss, mm::delta_rule, mm::data_gates<6>, mm::mse>;

TEST_CASE("normalized_momentum_rule, linear memory, data gates: meta-gradient equals finite differences") {
    seqtest::custom_problem<momentum_spec> p(8, 0.1);
    p.hyper[mm::data_gates<6>::theta_max] = 0.1;
    for (std::size_t chunk : {1, 4}) {
        p.options.chunk = chunk;
        const auto w = seqtest::fd_check(p, "normalized_momentum_rule, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}

TEST_CASE("delta_rule, linear memory, data gates: meta-gradient equals finite differences") {
    seqtest::custom_problem<delta_spec> p(8, 0.1);
    p.hyper[mm::data_gates<6>::theta_max] = 0.1;
    using P = decltype(p.params);
    CHECK_FALSE(P::has(mm::data_gates<6>::we));
    CHECK_FALSE(P::has(mm::data_gates<6>::be));
    CHECK(P::has(mm::data_gates<6>::wa));
    for (std::size_t chunk : {1, 4}) {
        p.options.chunk = chunk;
        const auto w = seqtest::fd_check(p, "delta_rule, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}
