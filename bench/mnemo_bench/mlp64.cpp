#include "mnemo_bench/common.hpp"

namespace bench {
namespace mm = mnemo::memory;
result run_mlp64(const options& o) {
    using spec =
        mm::spec<64, mm::mlp<mm::silu_act, false, 64, 256>, mm::l2_loss, mm::titans_rule, mm::data_gates<64>, mm::mse>;
    return run<spec>("mlp64", 1, 256, 1, o);
}
}  // namespace bench
