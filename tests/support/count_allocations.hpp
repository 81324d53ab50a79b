// Counts heap allocations: replaces the global operator new and delete of the executable
// that includes it (include it from one source file of a test executable only).
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace mnemo_test {
inline std::atomic<long> allocations{0};
}

// g++ 12 sees malloc/free behind a replaced new/delete pair as mismatched; they are not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
    ++mnemo_test::allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
