// EXPECT: mnemo: outer[(]u, v[)] needs two vectors
// outer(u, v) of a matrix and a vector.
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 3>;
    constexpr auto v = mnemo::vector<"v", 3>;
    [[maybe_unused]] auto e = mnemo::outer(M, v);
}
