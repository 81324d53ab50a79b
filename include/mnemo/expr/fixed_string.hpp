#pragma once
/// \file
/// A string usable as a template argument: the names of symbols.

#include <cstddef>
#include <string_view>

namespace mnemo {

/// A compile-time string, so that a symbol's name is part of its type.
template <std::size_t N>
struct fixed_string {
    char data[N]{};

    constexpr fixed_string(const char (&s)[N]) {
        for (std::size_t i = 0; i < N; ++i) data[i] = s[i];
    }
    constexpr std::string_view view() const { return {data, N - 1}; }
    constexpr std::size_t length() const { return N - 1; }
};

}  // namespace mnemo
