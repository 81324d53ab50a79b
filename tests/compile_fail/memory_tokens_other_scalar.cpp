// EXPECT: another element type or an xtensor expression is not converted implicitly
// float tokens given to a double memory: refused at compile time, not copied silently.
#include <mnemo/mnemo.hpp>

namespace mm = mnemo::memory;
using spec = mm::spec<4, mm::linear<4>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::mse>;
using memory_type = mm::sequence_memory<spec, double>;

int main() {
    memory_type memory;
    memory_type::parameters_type p;
    memory_type::hyperparameters_type h;
    xt::xtensor<float, 3> x = xt::zeros<float>({1, 3, 4});
    memory_type::context ctx;
    [[maybe_unused]] const auto& y = memory.forward(ctx, p, h, x);
}
