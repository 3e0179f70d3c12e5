# nudge_add_plugin(NAME <name> KIND <source|fanout|log|sink> SOURCES ... [DEPS ...])
#
# Builds a plugin as a shared library named `nudge-<kind>-<name>.so`, which is
# the name the runtime's plugin discovery looks for, and places it in the
# build tree's plugin folder so `nudge` finds it without flags.
function(nudge_add_plugin)
  cmake_parse_arguments(P "" "NAME;KIND" "SOURCES;DEPS" ${ARGN})
  if(NOT P_NAME OR NOT P_KIND OR NOT P_SOURCES)
    message(FATAL_ERROR "nudge_add_plugin: NAME, KIND and SOURCES are required")
  endif()
  set(target nudge-${P_KIND}-${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${target}
    LIBRARY_OUTPUT_DIRECTORY "${NUDGE_PLUGIN_OUTPUT_DIR}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${target} PRIVATE nudge::sdk nudge_warnings ${P_DEPS})
  install(TARGETS ${target} LIBRARY DESTINATION ${NUDGE_PLUGIN_INSTALL_DIR})
  set_property(GLOBAL APPEND PROPERTY NUDGE_PLUGIN_TARGETS ${target})
  set(NUDGE_PLUGIN_TARGET ${target} PARENT_SCOPE)
endfunction()
