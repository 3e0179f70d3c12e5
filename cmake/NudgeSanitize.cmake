# Sanitizer and fuzzing builds (CMakePresets.json: asan, tsan, fuzz; docs/testing.md).
#
#   -DNUDGE_SANITIZE=address,undefined   ASan + UBSan, every UBSan finding fatal
#   -DNUDGE_SANITIZE=thread              TSan
#   -DNUDGE_FUZZ=ON                      libFuzzer targets (clang only), with ASan + UBSan
#
# The flags go on every target of the tree, plugins included: a plugin is a
# shared library that the runtime dlopen()s, and an instrumented runtime must
# not load uninstrumented plugins (ASan would miss their bugs, TSan would see
# false races). With gcc, each plugin links the shared sanitizer runtime
# (DT_NEEDED libasan.so), which the executable has already loaded; with clang
# the runtime is linked statically into the executable and exported from it, so
# a plugin's sanitizer symbols stay undefined until dlopen() binds them. Never
# add -Wl,--no-undefined (or -Wl,-z,defs) to a plugin's link in such a build.
#
# Tests run with the options and suppressions of tests/sanitizers/ (see
# sanitizer-env.cmake below), whichever way ctest is started.

set(NUDGE_SANITIZE "" CACHE STRING
    "Sanitizers to build with: address,undefined or thread (empty: none)")
option(NUDGE_FUZZ "Build the libFuzzer targets (needs clang; adds ASan and UBSan)" OFF)

set(NUDGE_SANITIZER_DIR "${PROJECT_SOURCE_DIR}/tests/sanitizers")

string(REPLACE "," ";" _nudge_sanitizers "${NUDGE_SANITIZE}")
if(NUDGE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "NUDGE_FUZZ needs clang (libFuzzer): configure with the `fuzz` preset, "
                        "or -DCMAKE_CXX_COMPILER=clang++-14 (scripts/fuzz installs it)")
  endif()
  list(APPEND _nudge_sanitizers address undefined fuzzer-no-link)
endif()
list(REMOVE_DUPLICATES _nudge_sanitizers)

foreach(s IN LISTS _nudge_sanitizers)
  if(NOT s MATCHES "^(address|undefined|thread|leak|fuzzer-no-link)$")
    message(FATAL_ERROR "NUDGE_SANITIZE: unknown sanitizer '${s}'; use address,undefined or thread")
  endif()
endforeach()
if("thread" IN_LIST _nudge_sanitizers AND ("address" IN_LIST _nudge_sanitizers OR "leak" IN_LIST _nudge_sanitizers))
  message(FATAL_ERROR "NUDGE_SANITIZE: thread cannot be combined with address or leak")
endif()

if(_nudge_sanitizers)
  list(JOIN _nudge_sanitizers "," _nudge_sanitize_flag)
  message(STATUS "Sanitizers: ${_nudge_sanitize_flag}")
  add_compile_options(-fsanitize=${_nudge_sanitize_flag} -fno-omit-frame-pointer -fno-optimize-sibling-calls)
  # Linking a MODULE or SHARED library with -fsanitize is what makes gcc add
  # the runtime to it; clang ignores it there. fuzzer-no-link needs nothing at
  # link time (the fuzz targets themselves add -fsanitize=fuzzer).
  set(_nudge_link_sanitizers ${_nudge_sanitizers})
  list(REMOVE_ITEM _nudge_link_sanitizers fuzzer-no-link)
  list(JOIN _nudge_link_sanitizers "," _nudge_link_flag)
  add_link_options(-fsanitize=${_nudge_link_flag})
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # gcc 12's flow analysis is thrown off by the instrumentation: with ASan,
    # <regex> (std::function moves in regex_automaton.h) warns "may be used
    # uninitialized" (gcc PR 105616); the plain build keeps the warning.
    add_compile_options(-Wno-maybe-uninitialized)
    if("thread" IN_LIST _nudge_sanitizers)
      # gcc 12 warns that TSan does not model std::atomic_thread_fence, which
      # Boost.Asio's fenced blocks use; the fences sit next to its mutexes,
      # which TSan does see.
      add_compile_options(-Wno-tsan)
    endif()
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND
     "${CMAKE_MODULE_LINKER_FLAGS} ${CMAKE_SHARED_LINKER_FLAGS}" MATCHES "no-undefined|-z,?defs")
    message(FATAL_ERROR "NUDGE_SANITIZE/NUDGE_FUZZ with clang: plugins take the sanitizer runtime's "
                        "symbols from the executable when loaded; drop -Wl,--no-undefined / -z defs")
  endif()
  if("undefined" IN_LIST _nudge_sanitizers)
    # A UBSan finding fails the test instead of scrolling past in its log.
    add_compile_options(-fno-sanitize-recover=undefined)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
      # Recoverable only so that tests/sanitizers/ubsan.supp can name one
      # third-party header (rapidjson's null + 0 in internal/stack.h, which
      # only clang reports); halt_on_error=1 still stops at any other.
      add_compile_options(-fsanitize-recover=pointer-overflow)
    endif()
  endif()

  # Runtime options for every test ctest starts (including the `nudge`
  # processes the e2e tests start, which inherit ctest's environment). A
  # variable already set in the environment wins, so one can still ask for
  # e.g. ASAN_OPTIONS=detect_leaks=0 by hand.
  set(_env "${PROJECT_BINARY_DIR}/sanitizer-env.cmake")
  file(WRITE "${_env}" "# Written by cmake/NudgeSanitize.cmake; included by ctest (TEST_INCLUDE_FILES).\n")
  macro(_nudge_sanitizer_env name value)
    file(APPEND "${_env}" "if(NOT DEFINED ENV{${name}})\n  set(ENV{${name}} \"${value}\")\nendif()\n")
  endmacro()
  _nudge_sanitizer_env(ASAN_OPTIONS
    "detect_leaks=1:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1:halt_on_error=1")
  _nudge_sanitizer_env(LSAN_OPTIONS "suppressions=${NUDGE_SANITIZER_DIR}/lsan.supp:print_suppressions=0")
  _nudge_sanitizer_env(UBSAN_OPTIONS
    "print_stacktrace=1:halt_on_error=1:suppressions=${NUDGE_SANITIZER_DIR}/ubsan.supp")
  _nudge_sanitizer_env(TSAN_OPTIONS
    "suppressions=${NUDGE_SANITIZER_DIR}/tsan.supp:second_deadlock_stack=1:halt_on_error=0:exitcode=66")
  if("thread" IN_LIST _nudge_sanitizers AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # glibc's C11 threads, which librdkafka uses, are invisible to TSan; this
    # preloaded shim routes them through the pthread functions TSan intercepts
    # (see the file). Not instrumented itself, so any process may load it.
    add_library(nudge_tsan_c11_threads SHARED "${NUDGE_SANITIZER_DIR}/tsan_c11_threads.cpp")
    set_target_properties(nudge_tsan_c11_threads PROPERTIES COMPILE_OPTIONS "" LINK_OPTIONS ""
                          LIBRARY_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/lib")
    target_link_libraries(nudge_tsan_c11_threads PRIVATE Threads::Threads nudge_warnings)
    _nudge_sanitizer_env(LD_PRELOAD "${PROJECT_BINARY_DIR}/lib/libnudge_tsan_c11_threads.so")
  endif()
  set_property(DIRECTORY "${PROJECT_SOURCE_DIR}" APPEND PROPERTY TEST_INCLUDE_FILES "${_env}")
endif()

# nudge_add_fuzz_target(NAME <name> SOURCES <fuzz .cpp ...> CORPUS <dir> [DICT <file>]
#                       [MAX_LEN <bytes>] [LIBS <targets ...>] [DEFINITIONS ...]
#                       [DEPENDS <targets ...>])
#
# <SOURCES> define LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize).
# In a NUDGE_FUZZ build: the libFuzzer executable `fuzz_<name>` in bin/, its
# corpus, dictionary and -max_len recorded in bin/fuzz_<name>.options for
# scripts/fuzz. In every build with tests: the unit test `fuzz_<name>_replay`,
# which feeds each file of the corpus through the same LLVMFuzzerTestOneInput,
# so an input that once crashed stays fixed without clang.
function(nudge_add_fuzz_target)
  cmake_parse_arguments(F "" "NAME;CORPUS;DICT;MAX_LEN" "SOURCES;LIBS;DEFINITIONS;DEPENDS" ${ARGN})
  if(NOT F_NAME OR NOT F_SOURCES OR NOT F_CORPUS)
    message(FATAL_ERROR "nudge_add_fuzz_target: NAME, SOURCES and CORPUS are required")
  endif()
  if(NOT F_MAX_LEN)
    set(F_MAX_LEN 4096)
  endif()
  if(NUDGE_FUZZ)
    set(target fuzz_${F_NAME})
    add_executable(${target} ${F_SOURCES})
    target_link_libraries(${target} PRIVATE ${F_LIBS} nudge_warnings)
    target_compile_definitions(${target} PRIVATE ${F_DEFINITIONS})
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
    if(F_DEPENDS)
      add_dependencies(${target} ${F_DEPENDS})
    endif()
    # Read by scripts/fuzz: where the seeds are, the dictionary, the size cap.
    file(GENERATE OUTPUT "${PROJECT_BINARY_DIR}/bin/${target}.options" CONTENT
         "corpus=${F_CORPUS}\ndict=${F_DICT}\nmax_len=${F_MAX_LEN}\n")
    set_property(GLOBAL APPEND PROPERTY NUDGE_FUZZ_TARGETS ${target})
  endif()
  if(NUDGE_BUILD_TESTS)
    set(test fuzz_${F_NAME}_replay)
    add_executable(${test} ${F_SOURCES} "${PROJECT_SOURCE_DIR}/tests/support/fuzz_replay_main.cpp")
    target_link_libraries(${test} PRIVATE ${F_LIBS} nudge_warnings GTest::gtest)
    target_compile_definitions(${test} PRIVATE ${F_DEFINITIONS} NUDGE_FUZZ_CORPUS="${F_CORPUS}")
    if(F_DEPENDS)
      add_dependencies(${test} ${F_DEPENDS})
    endif()
    gtest_discover_tests(${test} TEST_PREFIX "fuzz.${F_NAME}." PROPERTIES LABELS unit)
  endif()
endfunction()
