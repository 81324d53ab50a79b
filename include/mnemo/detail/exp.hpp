#pragma once
/// \file
/// A vectorisable exp for the evaluator's elementwise loops.
#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace mnemo::detail {

/// e^x for float or double, to about one unit in the last place, written with arithmetic
/// and bit operations only (no call, no branch), so that a loop over it vectorises:
/// x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite), e^r by Cephes' polynomial (float) or
/// rational (double) approximation, then 2^n in two halves (exact, also for results that
/// overflow or are subnormal). exp(NaN) is NaN, exp(+-inf) is inf and 0.
template <class T>
inline T exp_arith(T x) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    using I = std::conditional_t<std::is_same_v<T, float>, std::int32_t, std::int64_t>;
    constexpr int mant = std::numeric_limits<T>::digits - 1;  // 23 or 52
    constexpr I bias = std::numeric_limits<T>::max_exponent - 1;  // 127 or 1023
    constexpr T lo = std::is_same_v<T, float> ? T(-104) : T(-746);
    constexpr T hi = std::is_same_v<T, float> ? T(89) : T(710);
    constexpr T log2e = T(1.44269504088896340736);
    constexpr T round_magic = std::is_same_v<T, float> ? T(12582912.0f) : T(6755399441055744.0);  // 1.5 * 2^mant
    const T xc = x < lo ? lo : (x > hi ? hi : x);
    const T n = (xc * log2e + round_magic) - round_magic;  // nearest integer
    T r, p;
    if constexpr (std::is_same_v<T, float>) {
        r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
        const T r2 = r * r;
        p = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r + 4.1665795894E-2f) * r +
             1.6666665459E-1f) * r + 5.0000001201E-1f;
        p = p * r2 + r + 1.0f;
    } else {
        r = (xc - n * 6.93145751953125E-1) - n * 1.42860682030941723212E-6;
        const T r2 = r * r;
        const T px =
            r * ((1.26177193074810590878E-4 * r2 + 3.02994407707441961300E-2) * r2 + 9.99999999999999999910E-1);
        const T qx =
            ((3.00198505138664455042E-6 * r2 + 2.52448340349684104192E-3) * r2 + 2.27265548208155028766E-1) * r2 +
            2.00000000000000000009E0;
        p = 1.0 + 2.0 * (px / (qx - px));
    }
    const I k = static_cast<I>(n);
    const I k1 = k >> 1, k2 = k - k1;
    const T s1 = std::bit_cast<T>(static_cast<I>((k1 + bias) << mant));
    const T s2 = std::bit_cast<T>(static_cast<I>((k2 + bias) << mant));
    const T e = p * s1 * s2;
    return x != x ? x : e;
}

}  // namespace mnemo::detail
