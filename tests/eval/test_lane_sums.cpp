// Sums in lanes (detail/lanes.hpp), used by the evaluator's sums, blas::dot, the rows of
// small_gemv and the input check: every term counted once, whatever the length's remainder
// against the lane count, checked where the exact result is known in closed form (sums of
// small integers are exact in float in any order), with 8, 16 and 32 lanes; the
// evaluator's sums of tensors, short (8 lanes), middling (16) and long (32, with a tail in
// every row), against a plain loop in long double; and a NaN in the tail reaches the result.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include <mnemo/mnemo.hpp>

namespace {

using namespace mnemo;

constexpr std::size_t lengths[] = {0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1023, 1024, 1025, 4099};

template <class T>
xt::xtensor<T, 2> ramp(std::size_t rows, std::size_t cols, double scale) {
    xt::xtensor<T, 2> a(std::array<std::size_t, 2>{rows, cols});
    for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = T(scale * std::sin(0.37 * double(i) + 0.1));
    return a;
}

}  // namespace

TEST_CASE("lane_sum and blas::dot count every term once, for every remainder") {
    for (std::size_t n : lengths) {
        CAPTURE(n);
        // sum_{i<n} i = n (n - 1) / 2: exact in float below 2^24.
        const float expected = float(n * (n - 1) / 2);
        CHECK(detail::lane_sum<float>(n, [](std::size_t i) { return float(i); }) == expected);
        CHECK(detail::lane_sum<float, 8>(n, [](std::size_t i) { return float(i); }) == expected);
        CHECK(detail::lane_sum<float, 16>(n, [](std::size_t i) { return float(i); }) == expected);
        CHECK(detail::lane_sum<float, 32>(n, [](std::size_t i) { return float(i); }) == expected);
        std::vector<float> a(n), b(n);
        for (std::size_t i = 0; i < n; ++i) {
            a[i] = float(i % 13);
            b[i] = float(1 + i % 5);
        }
        double ref = 0;
        for (std::size_t i = 0; i < n; ++i) ref += double(a[i]) * double(b[i]);
        CHECK(detail::blas::dot(a.data(), b.data(), n) == float(ref));
    }
}

TEST_CASE("small_gemv: rows with and without a tail against a plain loop") {
    constexpr int M = 5, K = 37;  // 37 = 2 * 16 + 5
    std::vector<double> a(M * K), x(K), y(M), yt(K);
    for (int i = 0; i < M * K; ++i) a[i] = double(i % 11) - 5;
    for (int j = 0; j < K; ++j) x[j] = double(j % 7) - 3;
    detail::blas::small_gemv<M, K>(false, a.data(), x.data(), y.data());
    for (int i = 0; i < M; ++i) {
        double ref = 0;
        for (int j = 0; j < K; ++j) ref += a[i * K + j] * x[j];
        CHECK(y[i] == ref);  // small integers: exact in any order
    }
}

TEST_CASE("the evaluator's sums: short and long, rank 1 and 2, against long double") {
    constexpr auto A = matrix<"A", 33, 37>;  // 1221 terms: 32 lanes, a tail of 5 in every row
    constexpr auto B = matrix<"B", 33, 37>;
    constexpr auto u = vector<"u", 1500>;
    constexpr auto C = matrix<"C", 3, 5>;  // 15 terms: 8 lanes
    constexpr auto w = vector<"w", 300>;   // 16 lanes
    const auto a = ramp<double>(33, 37, 1.0), b = ramp<double>(33, 37, 0.5), c = ramp<double>(3, 5, 2.0);
    xt::xtensor<double, 1> uu(std::array<std::size_t, 1>{1500});
    for (std::size_t i = 0; i < uu.size(); ++i) uu(i) = std::cos(0.01 * double(i));

    xt::xtensor<double, 1> ww(std::array<std::size_t, 1>{300});
    for (std::size_t i = 0; i < ww.size(); ++i) ww(i) = std::sin(0.1 * double(i));

    auto p = compile<double>(sum(hadamard(A, B)), sum(hadamard(u, u)), sum(C), sum(w));
    auto [s_ab, s_uu, s_c, s_w] = p(A = a, B = b, u = uu, C = c, w = ww);
    long double r_ab = 0, r_uu = 0, r_c = 0, r_w = 0;
    for (std::size_t i = 0; i < ww.size(); ++i) r_w += ww(i);
    for (std::size_t i = 0; i < a.size(); ++i) r_ab += (long double)a.data()[i] * b.data()[i];
    for (std::size_t i = 0; i < uu.size(); ++i) r_uu += (long double)uu(i) * uu(i);
    for (std::size_t i = 0; i < c.size(); ++i) r_c += c.data()[i];
    CHECK(std::fabs(s_ab - double(r_ab)) <= 1e-12 * std::fabs(double(r_ab)));
    CHECK(std::fabs(s_uu - double(r_uu)) <= 1e-12 * std::fabs(double(r_uu)));
    CHECK(std::fabs(s_c - double(r_c)) <= 1e-12 * (1 + std::fabs(double(r_c))));
    CHECK(std::fabs(s_w - double(r_w)) <= 1e-12 * (1 + std::fabs(double(r_w))));

    // A NaN in the last entry (a row's tail) reaches the sum.
    auto an = a;
    an(32, 36) = std::numeric_limits<double>::quiet_NaN();
    auto [s_nan, s_uu2, s_c2, s_w2] = p(A = an, B = b, u = uu, C = c, w = ww);
    CHECK(std::isnan(s_nan));
    CHECK(s_uu2 == s_uu);
    CHECK(s_c2 == s_c);
    CHECK(s_w2 == s_w);
}
