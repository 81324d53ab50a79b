#include "mnemo_bench/common.hpp"

namespace bench {
namespace mm = mnemo::memory;
using mlp64_spec =
    mm::spec<64, mm::mlp<mm::silu_act, false, 64, 256>, mm::l2_loss, mm::titans_rule, mm::data_gates<64>, mm::mse>;
result run_mlp64(const options& o) { return run<mlp64_spec>("mlp64", 1, 256, 1, o); }
// The same memory, 16 sequences in chunks of 16 (no other instantiation: run-time sizes).
result run_mlpchunk64(const options& o) { return run<mlp64_spec>("mlpchunk64", 16, 256, 16, o); }
}  // namespace bench
