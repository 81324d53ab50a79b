// EXPECT: mnemo: a symbol of this plan has no data bound to it
// Evaluating a plan without binding one of its symbols (x).
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 3>;
    constexpr auto x = mnemo::vector<"x", 3>;
    auto p = mnemo::compile<double>(mnemo::sum(M * x));
    xt::xtensor<double, 2> m = xt::zeros<double>({3, 3});
    [[maybe_unused]] auto r = p(M = m);
}
