#pragma once
/// \file
/// The learning rate's schedule: a linear warm-up, then a cosine decay.

#include <cmath>
#include <cstddef>
#include <numbers>
#include <stdexcept>
#include <string>

namespace mnemo::train {

/// The factor of the base learning rate at each step. Step s (0 for the first):
///   - s < warmup: (s + 1) / warmup, a linear warm-up;
///   - then, with `total` > 0, a cosine from 1 at s = warmup down to `min_factor` at
///     s = total, and `min_factor` after;
///   - with `total` = 0: 1 after the warm-up (constant).
struct schedule {
    std::size_t warmup = 0;
    std::size_t total = 0;
    double min_factor = 0;

    double factor(std::size_t s) const {
        if (s < warmup) return double(s + 1) / double(warmup);
        if (total == 0) return 1.0;
        if (s >= total) return min_factor;
        const double progress = double(s - warmup) / double(total - warmup);
        return min_factor + (1 - min_factor) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
    }

    /// Throws std::invalid_argument for a schedule that cannot be meant.
    void check() const {
        if (!(min_factor >= 0 && min_factor <= 1))
            throw std::invalid_argument("mnemo: schedule: min_factor = " + std::to_string(min_factor) +
                                        " is out of range [0, 1]");
        if (total != 0 && warmup >= total)
            throw std::invalid_argument("mnemo: schedule: warmup = " + std::to_string(warmup) +
                                        " steps is not shorter than total = " + std::to_string(total));
    }
};

}  // namespace mnemo::train
