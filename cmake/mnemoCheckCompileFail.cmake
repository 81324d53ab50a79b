# Script mode (cmake -P): builds one target that is expected NOT to compile.
#   -DBINARY_DIR=<build tree> -DTARGET=<target> [-DCONFIG=<config>] [-DEXPECT=<regex>]
# Succeeds only if the build fails and, when EXPECT is given, its output matches EXPECT (CMake
# regex syntax), i.e. the failure is the intended diagnostic rather than an unrelated error.
foreach(var BINARY_DIR TARGET)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "mnemoCheckCompileFail: -D${var}=... is required")
    endif()
endforeach()

set(config_args)
if(CONFIG)
    set(config_args --config "${CONFIG}")
endif()

execute_process(
    COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --target "${TARGET}" ${config_args}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output
)
message("${output}")

if(result EQUAL 0)
    message(FATAL_ERROR "compile-fail target '${TARGET}' compiled successfully but must not")
endif()
if(DEFINED EXPECT AND NOT EXPECT STREQUAL "")
    if(NOT output MATCHES "${EXPECT}")
        message(FATAL_ERROR
            "compile-fail target '${TARGET}' failed, but not with the expected diagnostic\n"
            "  expected output matching: ${EXPECT}")
    endif()
    message(STATUS "compile-fail target '${TARGET}' failed with the expected diagnostic: ${EXPECT}")
else()
    message(STATUS "compile-fail target '${TARGET}' failed to compile, as expected")
endif()
