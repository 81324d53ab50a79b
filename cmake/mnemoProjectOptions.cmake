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

# Links the library and the project-wide build settings into one of mnemo's own targets.
function(mnemo_target_defaults target)
    target_link_libraries(${target} PRIVATE mnemo::mnemo mnemo_warnings mnemo_native)
endfunction()
