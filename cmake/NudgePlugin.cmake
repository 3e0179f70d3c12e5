# nudge_add_plugin(NAME <name> KIND <source|transform|fanout|log|sink>
#                  [ENTRY <file>] SOURCES ... [DEPS ...])
#
# Builds a plugin as a shared library named `nudge-<kind>-<name>.so`, the name
# the runtime's plugin discovery looks for, with only its descriptor exported
# (hidden visibility), and installs it into <libdir>/nudge/plugins. Used by
# Nudge's own plugins and, through find_package(Nudge), by plugins built
# outside the tree. Sets NUDGE_PLUGIN_TARGET in the caller's scope.
#
# With ENTRY (the file holding NUDGE_PLUGIN), SOURCES are compiled once into
# an OBJECT library `nudge-<kind>-<name>-objects`, which the plugin links with
# the entry and which the plugin's tests link too (NUDGE_PLUGIN_OBJECTS in the
# caller's scope): the tests run the very objects the plugin ships, without
# compiling them a second time or carrying the export. Its usage requirements
# (the SDK, DEPS, the plugin's folder as include path) pass on to whatever
# links it; set further compile options on NUDGE_PLUGIN_OBJECTS, not on the
# plugin. Without ENTRY, SOURCES make up the plugin alone (as before ENTRY
# existed) and NUDGE_PLUGIN_OBJECTS is empty.
#
# In the tree, plugins land in the build's plugin folder (NUDGE_PLUGIN_OUTPUT_DIR)
# so `nudge` finds them without flags; outside it, in <build>/plugins (run
# `nudge run x.toml --plugin-dir <build>/plugins`).
function(nudge_add_plugin)
  cmake_parse_arguments(P "" "NAME;KIND;ENTRY" "SOURCES;DEPS" ${ARGN})
  if(NOT P_NAME OR NOT P_KIND OR NOT P_SOURCES)
    message(FATAL_ERROR "nudge_add_plugin: NAME, KIND and SOURCES are required")
  endif()
  if(NOT P_KIND MATCHES "^(source|transform|fanout|log|sink)$")
    message(FATAL_ERROR "nudge_add_plugin: KIND must be source, transform, fanout, log or sink, not '${P_KIND}'")
  endif()
  if(NOT P_NAME MATCHES "^[a-z][a-z0-9_-]*$")
    message(FATAL_ERROR "nudge_add_plugin: NAME '${P_NAME}' must be lower case letters, digits, _ and -")
  endif()
  if(P_ENTRY AND P_ENTRY IN_LIST P_SOURCES)
    message(FATAL_ERROR "nudge_add_plugin: ENTRY '${P_ENTRY}' must not be listed in SOURCES too")
  endif()
  if(TARGET nudge::sdk)
    set(sdk nudge::sdk)
  else()
    set(sdk Nudge::sdk)
  endif()
  set(target nudge-${P_KIND}-${P_NAME})

  if(P_ENTRY)
    set(objects ${target}-objects)
    add_library(${objects} OBJECT ${P_SOURCES})
    # Compiled for a shared library: position-independent, and nothing but
    # the descriptor visible from outside it.
    set_target_properties(${objects} PROPERTIES
      POSITION_INDEPENDENT_CODE ON
      CXX_VISIBILITY_PRESET hidden
      VISIBILITY_INLINES_HIDDEN ON)
    target_compile_features(${objects} PUBLIC cxx_std_20)
    target_include_directories(${objects} PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}")
    target_link_libraries(${objects} PUBLIC ${sdk} ${P_DEPS})
    if(TARGET nudge_warnings)
      target_link_libraries(${objects} PRIVATE nudge_warnings)
    endif()
    add_library(${target} MODULE ${P_ENTRY})
    target_link_libraries(${target} PRIVATE ${objects})
  else()
    set(objects "")
    add_library(${target} MODULE ${P_SOURCES})
    target_link_libraries(${target} PRIVATE ${sdk} ${P_DEPS})
  endif()

  if(NUDGE_PLUGIN_OUTPUT_DIR)
    set(output_dir "${NUDGE_PLUGIN_OUTPUT_DIR}")
  else()
    set(output_dir "${CMAKE_BINARY_DIR}/plugins")
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${target}
    LIBRARY_OUTPUT_DIRECTORY "${output_dir}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_features(${target} PRIVATE cxx_std_20)
  if(TARGET nudge_warnings)
    target_link_libraries(${target} PRIVATE nudge_warnings)
  endif()
  include(GNUInstallDirs)
  install(TARGETS ${target} LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}/nudge/plugins")
  set_property(GLOBAL APPEND PROPERTY NUDGE_PLUGIN_TARGETS ${target})
  set(NUDGE_PLUGIN_TARGET ${target} PARENT_SCOPE)
  set(NUDGE_PLUGIN_OBJECTS ${objects} PARENT_SCOPE)
endfunction()
