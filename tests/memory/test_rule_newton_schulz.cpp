// A non-Titans update rule: Newton-Schulz orthogonalised momentum (2 iterations),
// `X_0 = S / ||S||, X = 3/2 X - 1/2 X X^T X, M = (1 - alpha) M + theta X_2`, on a linear
// memory with data gates (d = 6, T = 8, the reference problems' values, theta_max 0.05).
// Its meta-gradient against central finite differences of its loss: relative 1e-6 (floor
// 1e-6), for the sequential form and chunk 4.
// One memory type (double).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using spec_t = seqtest::mm::spec<6, seqtest::mm::linear<6>, seqtest::mm::l2_loss, seqtest::mm::newton_schulz_rule<2>,
                                 seqtest::mm::data_gates<6>, seqtest::mm::mse>;

TEST_CASE("newton_schulz_rule<2>, linear memory, data gates: meta-gradient equals finite differences") {
    seqtest::custom_problem<spec_t> p(8, 0.1);
    p.hyper[seqtest::mm::data_gates<6>::theta_max] = 0.05;
    for (std::size_t chunk : {1, 4}) {
        p.options.chunk = chunk;
        const auto w = seqtest::fd_check(p, "newton_schulz_rule<2>, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}
