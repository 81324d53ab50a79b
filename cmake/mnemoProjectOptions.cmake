# Build settings for mnemo's own targets (tests, examples, benchmarks). They are deliberately kept
# off the public mnemo target so that consumers do not inherit warning or architecture flags.
include_guard(GLOBAL)

add_library(mnemo_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(mnemo_warnings INTERFACE
        -Wall -Wextra $<$<BOOL:${MNEMO_WERROR}>:-Werror>)
elseif(MSVC)
    target_compile_options(mnemo_warnings INTERFACE /W4 $<$<BOOL:${MNEMO_WERROR}>:/WX>)
endif()

# Off by default: binaries built with -march=native may not run on another machine (e.g. in CI).
add_library(mnemo_native INTERFACE)
if(MNEMO_NATIVE)
    include(CheckCXXCompilerFlag)
    check_cxx_compiler_flag(-march=native MNEMO_HAVE_MARCH_NATIVE)
    if(MNEMO_HAVE_MARCH_NATIVE)
        target_compile_options(mnemo_native INTERFACE -march=native)
    else()
        message(WARNING "mnemo: MNEMO_NATIVE is ON but ${CMAKE_CXX_COMPILER} rejects -march=native")
    endif()
endif()

# No debug information (-g0) where the build type asks for -g: debug information records the
# name of every instantiated type, and a memory's step types are long. At -O0, the unit
# tests/memory/test_mlp_bias_memory.cpp needs 1.9 GB without it and more than 12 GB with -g or
# even -g1 (docs/pitfalls.md). MNEMO_FULL_DEBUG_INFO=ON keeps the build type's -g.
add_library(mnemo_debug_info INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang" AND NOT MNEMO_FULL_DEBUG_INFO)
    target_compile_options(mnemo_debug_info INTERFACE $<$<CONFIG:Debug,RelWithDebInfo>:-g0>)
endif()

# Sanitizers (scripts/test.sh --sanitize): MNEMO_SANITIZE is a -fsanitize= list, e.g.
# "address,undefined" or "thread", compiled and linked into mnemo's own targets (not into the
# public mnemo target). With "undefined", the first undefined behaviour ends the program
# (-fno-sanitize-recover=undefined), so a test cannot pass with a UBSan report in its output.
set(MNEMO_SANITIZE "" CACHE STRING
    "Sanitizers for mnemo's own tests, examples and benchmarks: a -fsanitize= list (address,undefined or thread); empty: none")
add_library(mnemo_sanitize INTERFACE)
if(MNEMO_SANITIZE)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
        message(FATAL_ERROR "mnemo: MNEMO_SANITIZE needs g++ or clang, not ${CMAKE_CXX_COMPILER_ID}")
    endif()
    target_compile_options(mnemo_sanitize INTERFACE
        -fsanitize=${MNEMO_SANITIZE} -fno-omit-frame-pointer)
    if(MNEMO_SANITIZE MATCHES "undefined")
        target_compile_options(mnemo_sanitize INTERFACE -fno-sanitize-recover=undefined)
    endif()
    target_link_options(mnemo_sanitize INTERFACE -fsanitize=${MNEMO_SANITIZE})
endif()

# Links the library and the project-wide build settings into one of mnemo's own targets.
function(mnemo_target_defaults target)
    target_link_libraries(${target} PRIVATE mnemo::mnemo mnemo_warnings mnemo_native mnemo_debug_info
                                            mnemo_sanitize)
    if(TARGET mnemo::train)
        target_link_libraries(${target} PRIVATE mnemo::train)
    endif()
endfunction()
