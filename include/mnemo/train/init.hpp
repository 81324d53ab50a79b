#pragma once
/// \file
/// Initialisers: normal, Xavier/Glorot (normal and uniform), zeros and constants, applied to
/// a `tensor_list` by name, seeded and reproducible.
///
/// Design note: each tensor draws from its own stream, seeded by the run's seed and the
/// tensor's name (splitmix64 over an FNV-1a hash), and the normal variates come from
/// the polar Box-Muller method over 53-bit uniforms written here rather than from `<random>`'s
/// distributions, whose output differs between standard libraries. So a tensor's initial
/// values depend only on (seed, name, shape, rule): not on the order of the tensors, on
/// which other tensors exist, or on the compiler.

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mnemo/train/tensors.hpp"

namespace mnemo::train {

/// Independent normal values, mean `mean`, standard deviation `std`.
struct normal {
    double mean = 0, std = 1;
};
/// Xavier/Glorot normal: std = gain sqrt(2 / (fan_in + fan_out)); for a matrix (out, in),
/// fan_in = in and fan_out = out (beyond rank 2 the trailing dimensions multiply both, as
/// in PyTorch). Needs a tensor of rank 2 or more.
struct xavier_normal {
    double gain = 1;
};
/// Xavier/Glorot uniform: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)).
struct xavier_uniform {
    double gain = 1;
};
/// Every value 0.
struct zeros {};
/// Every value `value`.
struct constant {
    double value = 0;
};
using initializer = std::variant<normal, xavier_normal, xavier_uniform, zeros, constant>;

/// A rule: the tensors it applies to and how. `pattern` is a tensor's name, or a prefix
/// followed by `*` ("layer1.*", "*" for all).
struct init_rule {
    std::string pattern;
    initializer init;
};

namespace detail {

inline std::uint64_t splitmix64(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

inline std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

inline bool matches(std::string_view pattern, std::string_view name) {
    if (!pattern.empty() && pattern.back() == '*') return name.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
    return pattern == name;
}

}  // namespace detail

/// A reproducible stream of uniform and normal variates.
class random_stream {
public:
    explicit random_stream(std::uint64_t seed) : m_state(seed) {}
    /// The stream of tensor `name` in a run seeded with `seed`.
    random_stream(std::uint64_t seed, std::string_view name) : m_state(seed ^ detail::fnv1a(name)) {
        detail::splitmix64(m_state);
    }
    /// Uniform in [0, 1), 53 bits.
    double uniform() { return double(detail::splitmix64(m_state) >> 11) * 0x1.0p-53; }
    /// Standard normal (polar Box-Muller; the second variate of each pair is kept for the next call).
    double normal() {
        if (m_has_spare) {
            m_has_spare = false;
            return m_spare;
        }
        // Marsaglia's polar form of Box-Muller: no trigonometry.
        double u, v, s;
        do {
            u = 2 * uniform() - 1;
            v = 2 * uniform() - 1;
            s = u * u + v * v;
        } while (s >= 1 || s == 0);
        const double f = std::sqrt(-2.0 * std::log(s) / s);
        m_spare = v * f;
        m_has_spare = true;
        return u * f;
    }
    /// Uniform in [0, n).
    std::size_t below(std::size_t n) { return std::size_t(uniform() * double(n)); }

private:
    std::uint64_t m_state;
    double m_spare = 0;
    bool m_has_spare = false;
};

/// Throws std::invalid_argument if `init` cannot fill `t` (Xavier on a vector, a negative
/// or non-finite std, a non-finite constant), naming both.
template <class T>
void check_initializer(const tensor_view<T>& t, const initializer& init) {
    std::visit(
        [&](const auto& rule) {
            using R = std::decay_t<decltype(rule)>;
            auto bad = [&](const std::string& what) {
                throw std::invalid_argument("mnemo: cannot initialise '" + t.name + "' " + shape_string(t.shape) +
                                            ": " + what);
            };
            if constexpr (std::is_same_v<R, normal>) {
                if (!(rule.std >= 0) || !std::isfinite(rule.std) || !std::isfinite(rule.mean))
                    bad("normal needs a finite mean and a finite std >= 0, not mean = " + std::to_string(rule.mean) +
                        ", std = " + std::to_string(rule.std));
            } else if constexpr (std::is_same_v<R, xavier_normal> || std::is_same_v<R, xavier_uniform>) {
                if (t.shape.size() < 2) bad("Xavier initialisation needs a tensor of rank 2 or more");
                if (!std::isfinite(rule.gain) || rule.gain < 0)
                    bad("Xavier needs a finite gain >= 0, not " + std::to_string(rule.gain));
            } else if constexpr (std::is_same_v<R, constant>) {
                if (!std::isfinite(rule.value)) bad("the constant is not finite");
            }
        },
        init);
}

/// Fills one tensor with `init`, from the stream of (`seed`, its name).
template <class T>
void initialize(const tensor_view<T>& t, const initializer& init, std::uint64_t seed) {
    check_initializer(t, init);
    random_stream rng(seed, t.name);
    auto fans = [&]() {
        std::size_t receptive = 1;
        for (std::size_t i = 2; i < t.shape.size(); ++i) receptive *= t.shape[i];
        return std::pair{double(t.shape[1] * receptive), double(t.shape[0] * receptive)};
    };
    std::visit(
        [&](const auto& rule) {
            using R = std::decay_t<decltype(rule)>;
            if constexpr (std::is_same_v<R, normal>) {
                for (std::size_t i = 0; i < t.size; ++i) t.data[i] = T(rule.mean + rule.std * rng.normal());
            } else if constexpr (std::is_same_v<R, xavier_normal>) {
                const auto [in, out] = fans();
                const double s = rule.gain * std::sqrt(2.0 / (in + out));
                for (std::size_t i = 0; i < t.size; ++i) t.data[i] = T(s * rng.normal());
            } else if constexpr (std::is_same_v<R, xavier_uniform>) {
                const auto [in, out] = fans();
                const double a = rule.gain * std::sqrt(6.0 / (in + out));
                for (std::size_t i = 0; i < t.size; ++i) t.data[i] = T(a * (2 * rng.uniform() - 1));
            } else if constexpr (std::is_same_v<R, zeros>) {
                for (std::size_t i = 0; i < t.size; ++i) t.data[i] = T(0);
            } else {
                for (std::size_t i = 0; i < t.size; ++i) t.data[i] = T(rule.value);
            }
        },
        init);
}

/// Initialises the tensors of `params` by rules: each tensor takes the first rule whose
/// pattern matches its name; tensors that no rule matches keep their values. A rule that
/// matches no tensor is an error (a misspelt name); so is a rule that cannot fill a tensor
/// it matches (Xavier on a vector). Errors are thrown before anything is written.
///
///     train::initialize(params, seed, {{"WK", train::xavier_normal{}},
///                                      {"M0[0]", train::zeros{}},
///                                      {"ba", train::constant{-2.0}}});
template <class T>
void initialize(const tensor_list<T>& params, std::uint64_t seed, const std::vector<init_rule>& rules) {
    for (const auto& r : rules) {
        bool used = false;
        for (const auto& t : params) used = used || detail::matches(r.pattern, t.name);
        if (!used)
            throw std::invalid_argument("mnemo: the initialisation rule '" + r.pattern +
                                        "' matches no tensor (the tensors are " + params.names_string() + ")");
    }
    for (const auto& t : params) {
        for (const auto& r : rules) {
            if (detail::matches(r.pattern, t.name)) {
                check_initializer(t, r.init);
                break;
            }
        }
    }
    for (const auto& t : params) {
        for (const auto& r : rules) {
            if (detail::matches(r.pattern, t.name)) {
                initialize(t, r.init, seed);
                break;
            }
        }
    }
}

}  // namespace mnemo::train
