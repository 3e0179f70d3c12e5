# Pins the public SDK headers to the ABI version they were released under.
#
#   cmake -DSDK_DIR=sdk -P cmake/SdkAbiLock.cmake           check (a ctest test runs this)
#   cmake -DSDK_DIR=sdk -DUPDATE=ON -P cmake/SdkAbiLock.cmake   rewrite sdk/abi.lock
#
# The check fails when the headers changed since sdk/abi.lock was written, or
# when the lock's version is not kAbiVersion: a header change must be looked
# at, and the ABI version bumped if it alters a layout, a virtual function or
# an inline function's behaviour (docs/plugin-guide.md#abi). testing.hpp and
# tcp_proxy.hpp are left out: they are compiled into tests only, never across
# the plugin boundary.
file(GLOB headers "${SDK_DIR}/include/nudge/sdk.hpp" "${SDK_DIR}/include/nudge/sdk/*.hpp")
list(FILTER headers EXCLUDE REGEX "/(testing|tcp_proxy)\\.hpp$")
list(SORT headers)
set(all "")
foreach(h IN LISTS headers)
  file(READ "${h}" text)
  get_filename_component(name "${h}" NAME)
  string(APPEND all "== ${name}\n${text}")
endforeach()
string(SHA256 hash "${all}")

file(STRINGS "${SDK_DIR}/include/nudge/sdk/abi.hpp" line REGEX "kAbiVersion = [0-9]+;")
string(REGEX MATCH "kAbiVersion = ([0-9]+)" _ "${line}")
set(version "${CMAKE_MATCH_1}")
set(lock_file "${SDK_DIR}/abi.lock")

if(UPDATE)
  file(WRITE "${lock_file}" "${version} ${hash}\n")
  message(STATUS "sdk/abi.lock: ABI ${version}, headers ${hash}")
  return()
endif()

file(STRINGS "${lock_file}" lock LIMIT_COUNT 1)
string(REGEX MATCH "^([0-9]+) ([0-9a-f]+)$" _ "${lock}")
set(locked_version "${CMAKE_MATCH_1}")
set(locked_hash "${CMAKE_MATCH_2}")
if(NOT locked_hash STREQUAL hash)
  message(FATAL_ERROR
    "The public SDK headers changed since sdk/abi.lock was written (ABI ${locked_version}).\n"
    "If the change alters a class layout, a virtual function or an inline function's behaviour, bump "
    "kAbiVersion in sdk/include/nudge/sdk/abi.hpp. Then record the headers with:\n"
    "  cmake -DSDK_DIR=sdk -DUPDATE=ON -P cmake/SdkAbiLock.cmake")
endif()
if(NOT locked_version STREQUAL version)
  message(FATAL_ERROR "sdk/abi.lock records ABI ${locked_version} but abi.hpp says ${version}; "
                      "rewrite the lock with -DUPDATE=ON")
endif()
message(STATUS "SDK headers match sdk/abi.lock (ABI ${version})")
