#include "mnemo_bench/common.hpp"

namespace bench {
namespace mm = mnemo::memory;
result run_seed(const options& o) {
    using spec = mm::spec<10, mm::linear<10>, mm::l2_loss, mm::titans_rule, mm::data_gates<10>, mm::mse>;
    return run<spec>("seed", 1, 1, 1, o);
}
}  // namespace bench
