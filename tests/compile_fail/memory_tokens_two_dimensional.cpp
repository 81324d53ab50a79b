// EXPECT: one sequence [(]T, d[)] is a batch of one
// Tokens of one sequence as a (T, d) tensor where a batch (B, T, d) is expected: refused at
// compile time (xtensor would otherwise convert it into a (B, T, d) tensor of garbage shape).
#include <mnemo/mnemo.hpp>

namespace mm = mnemo::memory;
using spec = mm::spec<4, mm::linear<4>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::mse>;
using memory_type = mm::sequence_memory<spec, double>;

int main() {
    memory_type memory;
    memory_type::parameters_type p;
    memory_type::hyperparameters_type h;
    xt::xtensor<double, 2> x = xt::zeros<double>({3, 4});
    [[maybe_unused]] auto r = memory.meta_gradient(p, h, x, x);
}
