# Script mode (cmake -P): configures, builds and runs one of the consumer projects in this folder.
#   -DCONSUMER_SOURCE_DIR=<dir> -DCONSUMER_BINARY_DIR=<dir>
#   [-DGENERATOR=<generator>] [-DCXX_COMPILER=<path>] [-DCONFIG=<config>]
#   and either -DINSTALL_FROM=<mnemo build tree> -DINSTALL_PREFIX=<dir>
#   or         -DMNEMO_SOURCE_DIR=<mnemo checkout>
# With INSTALL_FROM/INSTALL_PREFIX, mnemo is first installed from that build tree into the prefix
# and the consumer finds it there with find_package(); otherwise the consumer gets the checkout
# (for add_subdirectory). Any failing step fails the script.
foreach(var CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "run_consumer: -D${var}=... is required")
    endif()
endforeach()
if(NOT CONFIG)
    set(CONFIG Release)
endif()

function(run_step description)
    string(JOIN " " command_line ${ARGN})
    message(STATUS "${description}: ${command_line}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "${description} failed (${result})")
    endif()
endfunction()

# Start from scratch every time so that stale state cannot hide a packaging problem.
file(REMOVE_RECURSE "${CONSUMER_BINARY_DIR}")

set(configure_args
    -S "${CONSUMER_SOURCE_DIR}"
    -B "${CONSUMER_BINARY_DIR}"
    "-DCMAKE_BUILD_TYPE=${CONFIG}"
)
if(GENERATOR)
    list(APPEND configure_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
    list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

if(DEFINED INSTALL_PREFIX)
    file(REMOVE_RECURSE "${INSTALL_PREFIX}")
    run_step("install mnemo" "${CMAKE_COMMAND}" --install "${INSTALL_FROM}"
        --prefix "${INSTALL_PREFIX}" --config "${CONFIG}")
    # Search only the fresh prefix for mnemo (dependencies still come from the system), and make
    # the consumer check that this is where the package was found.
    list(APPEND configure_args
        "-DCMAKE_PREFIX_PATH=${INSTALL_PREFIX}"
        "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"
        "-DMNEMO_EXPECTED_PREFIX=${INSTALL_PREFIX}"
    )
else()
    list(APPEND configure_args "-DMNEMO_SOURCE_DIR=${MNEMO_SOURCE_DIR}")
endif()

run_step("configure consumer" "${CMAKE_COMMAND}" ${configure_args})
run_step("build consumer" "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" --config "${CONFIG}")
# The consumer registers its executable with CTest, which resolves per-configuration paths.
run_step("run consumer" "${CMAKE_CTEST_COMMAND}" --test-dir "${CONSUMER_BINARY_DIR}" -C "${CONFIG}"
    --output-on-failure --no-tests=error)
