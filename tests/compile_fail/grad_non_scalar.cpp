// EXPECT: mnemo: grad[(]f, x[)] needs a scalar expression f
// The gradient of a vector-valued expression.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 3>;
    constexpr auto x = mnemo::vector<"x", 3>;
    [[maybe_unused]] auto g = mnemo::grad(M * x, M);
}
