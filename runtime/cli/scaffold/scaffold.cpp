#include "cli/scaffold/scaffold.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <stdexcept>

#include "cli/scaffold/templates.hpp"

namespace nudge::runtime {

namespace {

// Placeholders: @name@ the plugin's name, @kind@ its kind, @Kind@ the SDK's
// interface (Sink), @Class@ the class (JsonlSink); and @x@ for each `_x.*.in`
// file of the kind (cli/scaffold/templates.hpp says the layout).

bool is_kind(std::string_view kind) {
  for (const std::string_view k : {"source", "transform", "fanout", "log", "sink"})
    if (kind == k) return true;
  return false;
}

std::string camel(const std::string& text) {
  std::string out;
  bool upper = true;
  for (char c : text) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c);
    upper = false;
  }
  return out;
}

std::string fill(std::string text, const ScaffoldRequest& r) {
  const std::map<std::string, std::string> values{
      {"@name@", r.name}, {"@kind@", r.kind}, {"@Kind@", camel(r.kind)}, {"@Class@", camel(r.name) + camel(r.kind)}};
  for (const auto& [key, value] : values)
    for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

}  // namespace

std::vector<std::string> scaffold_problems(const ScaffoldRequest& r) {
  std::vector<std::string> problems;
  if (!std::regex_match(r.name, std::regex("[a-z][a-z0-9_]{0,39}")))
    problems.push_back("the name '" + r.name + "' must start with a letter and hold only a-z, 0-9 and _ (40 at most)");
  if (!is_kind(r.kind))
    problems.push_back("--kind must be source, transform, fanout, log or sink" +
                       (r.kind.empty() ? std::string(" (it is required)") : ", not '" + r.kind + "'"));
  std::error_code ec;
  if (std::filesystem::exists(r.dir, ec) && !std::filesystem::is_empty(r.dir, ec))
    problems.push_back("'" + r.dir.string() + "' exists and is not empty; choose another --dir");
  return problems;
}

std::vector<std::filesystem::path> write_plugin_scaffold(const ScaffoldRequest& r) {
  const std::string common = "common/";
  const std::string own = r.kind + "/";
  // The kind's fragments first: the placeholders they fill, and their text
  // without the file's last newline (they are spliced into a line).
  std::vector<std::pair<std::string, std::string>> fragments;
  std::vector<std::pair<std::filesystem::path, std::string_view>> files;
  for (const auto& t : scaffold_templates()) {
    std::string_view relative = t.path;
    if (relative.starts_with(common)) relative.remove_prefix(common.size());
    else if (relative.starts_with(own)) relative.remove_prefix(own.size());
    else continue;
    if (!relative.ends_with(".in")) continue;
    relative.remove_suffix(3);
    if (relative.starts_with("_")) {
      std::string text(t.text);
      if (text.ends_with('\n')) text.pop_back();
      fragments.emplace_back("@" + std::string(relative.substr(1, relative.find('.') - 1)) + "@", std::move(text));
    } else {
      files.emplace_back(fill(std::string(relative), r), t.text);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::filesystem::path> written;
  for (const auto& [relative, text] : files) {
    const auto path = r.dir / relative;
    std::filesystem::create_directories(path.parent_path());
    std::string content(text);
    for (const auto& [placeholder, fragment] : fragments)
      if (const auto at = content.find(placeholder); at != std::string::npos)
        content.replace(at, placeholder.size(), fragment);
    std::ofstream out(path);
    out << fill(content, r);
    if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
    written.push_back(relative);
  }
  return written;
}

}  // namespace nudge::runtime
