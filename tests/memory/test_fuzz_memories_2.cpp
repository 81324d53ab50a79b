// Fuzzed memories, unit 2 of 2: the memories of the seeds MNEMO_FUZZ_SEED + [2, 4), chosen
// at compile time (model x inner loss x update rule x gates x outer loss x key
// normalisation, tests/memory/fuzz_memory_support.hpp: any memory, then a linear one; two
// MLP memories may need more than 2 GB of compiler memory), each run with seeded random
// batches and run options (chunk size, checkpoint interval, dual form on/off), the
// meta-gradient checked against central differences of the memory's own loss (double,
// every entry of every meta-parameter, relative 1e-6, floor 1e-6).
#include <doctest/doctest.h>

#include "memory/fuzz_memory_support.hpp"

TEST_CASE("fuzzed memories: meta-gradients against central differences") {
    fuzzmem::run_unit<1>();
}
