#include "static_files.hpp"

namespace nudge::plugins::websocket {

namespace fs = std::filesystem;

std::optional<fs::path> resolve_static_path(const fs::path& root, std::string_view target) {
  if (root.empty()) return std::nullopt;
  target = target.substr(0, target.find_first_of("?#"));
  if (target.empty() || target.front() != '/') return std::nullopt;
  // Percent-encoding is refused outright rather than decoded: the page's own
  // files never need it, and it is how traversal tricks hide.
  if (target.find('%') != std::string_view::npos || target.find('\\') != std::string_view::npos ||
      target.find('\0') != std::string_view::npos)
    return std::nullopt;
  fs::path relative = fs::path(std::string(target.substr(1))).lexically_normal();
  if (relative.empty() || relative == ".") relative = "index.html";
  for (const auto& part : relative)
    if (part == ".." || part.string().starts_with(".")) return std::nullopt;
  const fs::path file = root / relative;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  return file;
}

std::string_view content_type_for(const fs::path& file) {
  const std::string ext = file.extension().string();
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

}  // namespace nudge::plugins::websocket
