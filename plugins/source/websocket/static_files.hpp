#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace nudge::plugins::websocket {

/// Maps a request target to a file under `root`, refusing anything that
/// would leave it (`..`, encoded or not). "/" serves index.html; the query
/// string is ignored. nullopt when there is no such regular file.
std::optional<std::filesystem::path> resolve_static_path(const std::filesystem::path& root, std::string_view target);

/// The Content-Type for a file name's extension.
std::string_view content_type_for(const std::filesystem::path& file);

}  // namespace nudge::plugins::websocket
