#include "static_files.hpp"

#include <algorithm>

namespace nudge::plugins::websocket {

namespace fs = std::filesystem;

namespace {

/// A path segment that names a file or folder of the served tree, and
/// nothing else: no traversal, no hidden files, nothing encoded or escaped.
bool plain_segment(std::string_view segment) {
  if (segment.empty() || segment.front() == '.') return false;  // ".", "..", ".env", ".git"
  return std::none_of(segment.begin(), segment.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f || c == '\\' || c == '%' || c == ':';
  });
}

/// Whether `inner` is `outer` or lies below it; both canonical.
bool inside(const fs::path& outer, const fs::path& inner) {
  auto o = outer.begin();
  auto i = inner.begin();
  for (; o != outer.end(); ++o, ++i)
    if (i == inner.end() || *o != *i) return false;
  return true;
}

}  // namespace

std::optional<fs::path> resolve_static_path(const fs::path& root, std::string_view target) {
  if (root.empty()) return std::nullopt;
  target = target.substr(0, target.find_first_of("?#"));
  if (target.empty() || target.front() != '/' || target.size() > kMaxStaticPathBytes) return std::nullopt;
  fs::path relative;
  while (!target.empty()) {
    target.remove_prefix(1);  // the '/' before the segment
    const auto end = std::min(target.find('/'), target.size());
    const std::string_view segment = target.substr(0, end);
    target.remove_prefix(end);
    if (segment.empty()) continue;  // "//": nothing, never the file system's root
    if (!plain_segment(segment)) return std::nullopt;
    relative /= std::string(segment);
  }
  if (relative.empty()) relative = "index.html";
  std::error_code ec;
  const fs::path base = fs::canonical(root, ec);
  if (ec) return std::nullopt;
  // Links inside the folder are fine; one that leads out of it is not.
  const fs::path file = fs::canonical(base / relative, ec);
  if (ec || !inside(base, file) || !fs::is_regular_file(file, ec)) return std::nullopt;
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
