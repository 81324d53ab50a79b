// mnemo's exp (detail/exp.hpp, used by exp and sigmoid) against the C library's.
//
// Over the whole range where the result is neither 0 nor infinite, and beyond it: within
// 1 ulp of the correctly rounded value in float (the double exp rounded to float), within
// 2 ulp of std::exp in double; the special values; and the sigmoid built on it against
// its definition. 200,000 points per range from a fixed seed.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include <mnemo/mnemo.hpp>

namespace {

template <class T>
double ulps(T a, T ref) {
    if (a == ref) return 0;
    if (!std::isfinite(a) || !std::isfinite(ref)) return std::numeric_limits<double>::infinity();
    const T r = std::fabs(ref);
    const T u = r == 0 ? std::numeric_limits<T>::denorm_min()
                       : std::nextafter(r, std::numeric_limits<T>::infinity()) - r;
    return std::fabs(double(a) - double(ref)) / double(u);
}

template <class T>
double worst_ulps(double lo, double hi) {
    std::mt19937_64 gen(7);
    std::uniform_real_distribution<double> pick(lo, hi);
    double worst = 0;
    for (int i = 0; i < 200000; ++i) {
        const T x = T(pick(gen));
        const T ref = std::is_same_v<T, float> ? T(std::exp(double(x))) : T(std::exp(x));
        worst = std::max(worst, ulps(mnemo::detail::exp_arith(x), ref));
    }
    return worst;
}

}  // namespace

TEST_CASE("exp: float within 1 ulp of the correctly rounded value") {
    const double near = worst_ulps<float>(-20, 20), far = worst_ulps<float>(-110, 95);
    MESSAGE("float: worst " << near << " ulp on [-20, 20], " << far << " on [-110, 95]");
    CHECK(near <= 1.0);
    CHECK(far <= 1.0);
}

TEST_CASE("exp: double within 2 ulp of std::exp") {
    const double near = worst_ulps<double>(-20, 20), far = worst_ulps<double>(-750, 712);
    MESSAGE("double: worst " << near << " ulp on [-20, 20], " << far << " on [-750, 712]");
    CHECK(near <= 2.0);
    CHECK(far <= 2.0);
}

TEST_CASE("exp: special values and the ends of the range") {
    using mnemo::detail::exp_arith;
    constexpr double inf = std::numeric_limits<double>::infinity();
    CHECK(exp_arith(0.0) == 1.0);
    CHECK(exp_arith(-0.0) == 1.0);
    CHECK(exp_arith(inf) == inf);
    CHECK(exp_arith(-inf) == 0.0);
    CHECK(std::isnan(exp_arith(std::numeric_limits<double>::quiet_NaN())));
    CHECK(exp_arith(710.0) == inf);
    CHECK(exp_arith(-746.0) == 0.0);
    CHECK(exp_arith(-745.0) == std::exp(-745.0));  // subnormal
    CHECK(exp_arith(89.0f) == std::numeric_limits<float>::infinity());
    CHECK(exp_arith(-104.0f) == 0.0f);
    CHECK(exp_arith(-103.0f) == float(std::exp(-103.0)));  // subnormal
    CHECK(std::isnan(exp_arith(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("sigmoid on the vectorised exp") {
    double worst = 0;
    for (int i = -4000; i <= 4000; ++i) {
        const double a = 0.01 * i;
        const double ref = a >= 0 ? 1.0 / (1.0 + std::exp(-a)) : std::exp(a) / (1.0 + std::exp(a));
        worst = std::max(worst, std::fabs(mnemo::sigmoid_op::apply(a) - ref) / ref);
    }
    MESSAGE("sigmoid: worst relative difference " << worst);
    CHECK(worst <= 1e-15);
    CHECK(mnemo::sigmoid_op::apply(-800.0) == 0.0);
    CHECK(mnemo::sigmoid_op::apply(800.0) == 1.0);
}
