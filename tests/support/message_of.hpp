// The message of what a call throws: for tests of error messages.
#pragma once

#include <exception>
#include <string>

namespace mnemo_test {

/// The what() of the std::exception thrown by `f`, or "(no exception)".
template <class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

}  // namespace mnemo_test
