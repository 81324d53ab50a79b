// Fuzzed derivatives, unit 1 of 3: the expressions of the seeds MNEMO_FUZZ_SEED + [0, 14),
// random well-shaped expressions generated at compile time (tests/support/fuzz_expr.hpp),
// whose first derivatives grad(f, X) and mixed second derivatives
// grad(sum(grad(f, M) * U), K) are checked against central differences in float64 at
// seeded random points. Three units of 14 keep each under a minute of compile time.
#include <doctest/doctest.h>

#include "support/fuzz_expr.hpp"

TEST_CASE("fuzzed derivatives: first and mixed second derivatives of random expressions") {
    mnemo_test::fuzz::run_unit<0>();
}
