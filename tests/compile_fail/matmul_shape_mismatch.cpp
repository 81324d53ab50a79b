// EXPECT: product_shapes_match<mnemo::op::in_matrix_product, mnemo::shape<3, 4>, mnemo::shape<3> ?>
// A (3, 4) matrix times a vector of size 3: the inner dimensions differ.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 4>;
    constexpr auto x = mnemo::vector<"x", 3>;
    [[maybe_unused]] auto e = M * x;
}
