#pragma once
/// \file
/// The library's version.

#define MNEMO_VERSION_MAJOR 0
#define MNEMO_VERSION_MINOR 1
#define MNEMO_VERSION_PATCH 0

namespace mnemo {
inline constexpr int version_major = MNEMO_VERSION_MAJOR;
inline constexpr int version_minor = MNEMO_VERSION_MINOR;
inline constexpr int version_patch = MNEMO_VERSION_PATCH;
}  // namespace mnemo
