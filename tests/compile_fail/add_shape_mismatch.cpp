// EXPECT: shapes_match<mnemo::op::in_operator_plus, mnemo::shape<3>, mnemo::shape<4> ?>
// A vector of size 3 plus a vector of size 4: the static_assert of operator+ names the
// operation and both shapes.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto a = mnemo::vector<"a", 3>;
    constexpr auto b = mnemo::vector<"b", 4>;
    [[maybe_unused]] auto e = a + b;
}
