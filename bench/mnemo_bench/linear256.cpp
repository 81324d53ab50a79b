#include "mnemo_bench/common.hpp"

namespace bench {
namespace mm = mnemo::memory;
result run_big256(const options& o) {
    using spec = mm::spec<256, mm::linear<256>, mm::l2_loss, mm::titans_rule, mm::data_gates<256>, mm::mse>;
    return run<spec>("big256", 4, 512, 64, o);
}
}  // namespace bench
