// The reference problem `seq_mlp`: its meta-gradient against central finite differences
// of its own outer loss, on every entry of every meta-parameter (relative error <= 1e-6).
#include <doctest/doctest.h>

#include "examples/reference_problems.hpp"
#include "support/memory_fd.hpp"

TEST_CASE("reference problem seq_mlp: meta-gradient equals finite differences") {
    memfd::check_reference_problem(reference::make_seq_mlp());
}
