// EXPECT: another element type or an xtensor expression is not converted implicitly
// double tokens given to a float memory (the reverse of memory_tokens_other_scalar.cpp):
// refused at compile time, not narrowed silently.
#include <mnemo/mnemo.hpp>

namespace mm = mnemo::memory;
using spec = mm::spec<4, mm::linear<4>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::mse>;
using memory_type = mm::sequence_memory<spec, float>;

int main() {
    memory_type memory;
    memory_type::parameters_type p;
    memory_type::hyperparameters_type h;
    xt::xtensor<double, 3> x = xt::zeros<double>({1, 3, 4});
    xt::xtensor<double, 3> t = xt::zeros<double>({1, 3, 4});
    [[maybe_unused]] const auto r = memory.forward(p, h, x, t);
}
