#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::plugins::websocket {

/// Longest request path served as a file; longer ones are refused unread.
inline constexpr std::size_t kMaxStaticPathBytes = 1024;

/// Maps a request target to a regular file inside `root`, or nullopt.
///
/// The target's path is split on '/' and rebuilt below `root` one plain
/// segment at a time, so nothing in it can name another place: empty segments
/// (a doubled slash) are skipped, and any segment that is `.`, `..`, hidden
/// (starts with '.'), or holds a backslash, a control byte or a '%' (encoded
/// paths are refused, not decoded) refuses the whole request. The file found
/// is then resolved through symbolic links and must still lie inside the
/// canonical `root`: a link pointing out of the folder is not followed. "/"
/// serves index.html; the query string and fragment are ignored.
std::optional<std::filesystem::path> resolve_static_path(const std::filesystem::path& root, std::string_view target);

/// The Content-Type for a file name's extension.
std::string_view content_type_for(const std::filesystem::path& file);

}  // namespace nudge::plugins::websocket
