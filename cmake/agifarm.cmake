# agifarm_library(NAME SOURCES ... DEPS ...): one library per concept under src/<concept>/.
# Public headers are included as "<concept>/<header>.hpp" from src/.
function(agifarm_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(agifarm_${name} STATIC ${A_SOURCES})
  target_include_directories(agifarm_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(agifarm_${name} PUBLIC ${A_DEPS})
  add_library(agifarm::${name} ALIAS agifarm_${name})
endfunction()

# agifarm_test(NAME LABEL unit|integration SOURCES ... DEPS ... [TIMEOUT s]): one GoogleTest binary,
# registered with ctest as one test per TEST() so failures are named.
function(agifarm_test name)
  cmake_parse_arguments(A "RUN_SERIAL" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(A_LABEL STREQUAL "integration" AND NOT AGIFARM_INTEGRATION_TESTS)
    return()  # the asan preset builds and runs unit tests only
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 120)
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main GTest::gmock Threads::Threads)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(${name} PRIVATE
    AGIFARM_LLAMA_BIN="${AGIFARM_LLAMA_BIN}"
    AGIFARM_LLAMA_SRC="${AGIFARM_LLAMA_SRC}"
    AGIFARM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    AGIFARM_BINARY_DIR="${PROJECT_BINARY_DIR}"
    AGIFARM_CLI="$<TARGET_FILE:agifarm>")
  include(GoogleTest)
  # RUN_SERIAL: tests that make machines (network namespaces, sshd, several llama-servers each) run
  # alone, so their timing is not at the mercy of whatever else ctest -j runs on 2 cores.
  set(serial "")
  if(A_RUN_SERIAL)
    set(serial RUN_SERIAL TRUE)
  endif()
  gtest_discover_tests(${name} PROPERTIES LABELS ${A_LABEL} TIMEOUT ${A_TIMEOUT} ${serial}
                       DISCOVERY_TIMEOUT 60)
endfunction()
