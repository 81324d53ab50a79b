// Float against double on reference problems: the loss within 1e-3 relative and every
// gradient tensor within 1e-3 norm-wise (||g_f - g_d|| / ||g_d||); the worst is reported.
// Memory spec: linear memory with const gates (d = 8); float and double (two instantiations).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

TEST_CASE("reference problem seq_linear: float within 1e-3 of double") {
    const auto w = seqtest::float_vs_double(reference::make_seq_linear<float>(), reference::make_seq_linear<double>());
    CHECK(w.err <= 1e-3);
}
