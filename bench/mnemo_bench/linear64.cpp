#include "mnemo_bench/common.hpp"

namespace bench {
namespace mm = mnemo::memory;
result run_linear64(const options& o, const std::string& name, std::size_t batch, std::size_t chunk) {
    using spec = mm::spec<64, mm::linear<64>, mm::l2_loss, mm::titans_rule, mm::data_gates<64>, mm::mse>;
    return run<spec>(name, batch, 256, chunk, o);
}
}  // namespace bench
