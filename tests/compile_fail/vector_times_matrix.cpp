// EXPECT: mnemo: operator[*] with a matrix operand needs the matrix on the left
// A vector times a matrix (v^T M is written transpose(M) * v in mnemo).
#include <mnemo/mnemo.hpp>

int main() {
    constexpr auto M = mnemo::matrix<"M", 3, 3>;
    constexpr auto v = mnemo::vector<"v", 3>;
    [[maybe_unused]] auto e = v * M;
}
