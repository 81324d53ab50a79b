// EXPECT: mnemo: grad[(]f, x[)] differentiates with respect to a symbol
// The gradient with respect to an expression that is not a symbol.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 3>;
    constexpr auto x = mnemo::vector<"x", 3>;
    constexpr auto f = mnemo::sum(mnemo::square(M * x));
    [[maybe_unused]] auto g = mnemo::grad(f, M * x);
}
