#pragma once
/// \file
/// Sums in independent lanes. A running sum in one accumulator is bound by the latency of
/// the add (one add every few cycles); without reassociating (no -ffast-math) a compiler
/// may not split it. Written as W partial sums, lane l taking the terms l, l + W, ..., the
/// loop over the lanes vectorises, and the lanes are then combined pairwise. Every sum of
/// many terms in mnemo's kernels (the evaluator's sums, dot products, matrix-vector rows,
/// the input check) goes through these.

#include <cstddef>

namespace mnemo::detail {

/// The most lanes a sum takes: two AVX-512 registers of float (four AVX2, eight SSE ones),
/// enough to keep the adds of a loop that loads two operands per term busy.
inline constexpr std::size_t sum_lanes = 32;

/// The lanes for a sum of n terms: combining the lanes costs about as much as a short
/// pass over them, so short sums take fewer. Measured (g++ 12 -O3 -march=native, float
/// dot products on this machine): n = 64 in 4.8 ns with 8 lanes, 6.4 with 16, 9.0 with 32;
/// n = 256 in 12.9 ns with 16, 14.8 with 32 (and 61 with 8: the compiler leaves 8 lanes
/// scalar from 128 terms on); n = 4096 in 132 ns with 32, 229 with 16.
constexpr std::size_t lanes_for(std::size_t n) { return n < 128 ? 8 : n < 1024 ? 16 : sum_lanes; }

/// acc[0] + ... + acc[W - 1], combined pairwise (W a power of two).
template <class T, std::size_t W>
constexpr T fold_lanes(T (&acc)[W]) {
    static_assert(W > 0 && (W & (W - 1)) == 0, "mnemo internal: the lane count must be a power of two.");
    for (std::size_t w = W / 2; w > 0; w /= 2)
        for (std::size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
    return acc[0];
}

/// acc[i % W] += f(i) for i < n, W at a time (a tail shorter than W goes to the first lanes).
template <class T, std::size_t W, class F>
inline void add_to_lanes(T (&acc)[W], std::size_t n, F&& f) {
    const std::size_t full = n / W * W;
    for (std::size_t i = 0; i < full; i += W)
        for (std::size_t l = 0; l < W; ++l) acc[l] += f(i + l);
    for (std::size_t i = full; i < n; ++i) acc[i - full] += f(i);
}

/// sum_{i < n} f(i) in W lanes.
template <class T, std::size_t W, class F>
inline T lane_sum(std::size_t n, F&& f) {
    T acc[W] = {};
    add_to_lanes(acc, n, f);
    return fold_lanes(acc);
}

/// sum_{i < n} f(i) in lanes_for(n) lanes, n known at run time.
template <class T, class F>
inline T lane_sum(std::size_t n, F&& f) {
    if (n < 128) return lane_sum<T, lanes_for(0)>(n, f);
    if (n < 1024) return lane_sum<T, lanes_for(128)>(n, f);
    return lane_sum<T, lanes_for(1024)>(n, f);
}

}  // namespace mnemo::detail
