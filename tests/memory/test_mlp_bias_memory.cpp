// An MLP memory with biases and silu, `M(k) = W2 silu(W1 k + b1) + b2` (d = 4, hidden 8),
// data gates (theta_max 0.1), T = 8, the reference problems' values (M0 tensors scaled by
// 0.3). Its meta-gradient against central finite differences of its loss: relative 1e-6
// (floor 1e-6), sequential form and chunk 3. One memory type (double). (gelu and relu are covered by the
// operation tests; a gelu MLP memory costs about 75 s and 2.3 GB of g++ to compile.)
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mm = seqtest::mm;
using spec_t = mm::spec<4, mm::mlp<mm::silu_act, true, 4, 8>, mm::l2_loss, mm::titans_rule, mm::data_gates<4>, mm::mse>;

TEST_CASE("mlp<silu, bias, 4, 8> memory: meta-gradient equals finite differences") {
    seqtest::custom_problem<spec_t> p(8, 0.3);
    p.hyper[mm::data_gates<4>::theta_max] = 0.1;
    static_assert(seqtest::custom_problem<spec_t>::memory_type::n == 4, "W1, W2, b1, b2");
    for (std::size_t chunk : {1, 3}) {
        p.options.chunk = chunk;
        const auto w = seqtest::fd_check(p, "mlp<silu, bias>, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}
