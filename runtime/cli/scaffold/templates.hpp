#pragma once

#include <span>
#include <string_view>

namespace nudge::runtime {

/// One file of runtime/cli/scaffold/templates/, as embedded at build time
/// (embed_templates.cmake).
struct ScaffoldTemplate {
  std::string_view path;  ///< relative to templates/, e.g. "sink/src/@name@_sink.hpp.in"
  std::string_view text;  ///< the file's bytes
};

/// Every template, sorted by path. The layout (scaffold.cpp reads it):
/// `common/` holds the files of every kind, `<kind>/` those of one kind; a
/// file's path there, with its placeholders filled and `.in` dropped, is
/// where it is written. A file whose name starts with `_` is not written: its
/// text fills the placeholder of that name (`_keys.md.in` fills `@keys@`).
std::span<const ScaffoldTemplate> scaffold_templates();

}  // namespace nudge::runtime
