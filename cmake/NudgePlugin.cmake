# nudge_add_plugin(NAME <name> KIND <source|transform|fanout|log|sink> SOURCES ... [DEPS ...])
#
# Builds a plugin as a shared library named `nudge-<kind>-<name>.so`, the name
# the runtime's plugin discovery looks for, with only its descriptor exported
# (hidden visibility), and installs it into <libdir>/nudge/plugins. Used by
# Nudge's own plugins and, through find_package(Nudge), by plugins built
# outside the tree. Sets NUDGE_PLUGIN_TARGET in the caller's scope.
#
# In the tree, plugins land in the build's plugin folder (NUDGE_PLUGIN_OUTPUT_DIR)
# so `nudge` finds them without flags; outside it, in <build>/plugins (run
# `nudge run x.toml --plugin-dir <build>/plugins`).
function(nudge_add_plugin)
  cmake_parse_arguments(P "" "NAME;KIND" "SOURCES;DEPS" ${ARGN})
  if(NOT P_NAME OR NOT P_KIND OR NOT P_SOURCES)
    message(FATAL_ERROR "nudge_add_plugin: NAME, KIND and SOURCES are required")
  endif()
  if(NOT P_KIND MATCHES "^(source|transform|fanout|log|sink)$")
    message(FATAL_ERROR "nudge_add_plugin: KIND must be source, transform, fanout, log or sink, not '${P_KIND}'")
  endif()
  if(NOT P_NAME MATCHES "^[a-z][a-z0-9_-]*$")
    message(FATAL_ERROR "nudge_add_plugin: NAME '${P_NAME}' must be lower case letters, digits, _ and -")
  endif()
  set(target nudge-${P_KIND}-${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
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
  if(TARGET nudge::sdk)
    target_link_libraries(${target} PRIVATE nudge::sdk ${P_DEPS})
  else()
    target_link_libraries(${target} PRIVATE Nudge::sdk ${P_DEPS})
  endif()
  include(GNUInstallDirs)
  install(TARGETS ${target} LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}/nudge/plugins")
  set_property(GLOBAL APPEND PROPERTY NUDGE_PLUGIN_TARGETS ${target})
  set(NUDGE_PLUGIN_TARGET ${target} PARENT_SCOPE)
endfunction()
