// EXPECT: distinct_symbol_names<.*shape<4, 4>.*shape<3, 3>|distinct_symbol_names<.*shape<3, 3>.*shape<4, 4>
// One name, "W", used with two shapes in one loss; grad must refuse it and name both.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto W3 = mnemo::matrix<"W", 3, 3>;
    constexpr auto W4 = mnemo::matrix<"W", 4, 4>;
    constexpr auto x = mnemo::vector<"x", 3>;
    constexpr auto y = mnemo::vector<"y", 4>;
    constexpr auto f = mnemo::sum(W3 * x) + mnemo::sum(W4 * y);
    [[maybe_unused]] auto g = mnemo::grad(f, x);
}
