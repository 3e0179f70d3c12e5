// `nudge new plugin`: the templates in runtime/cli/scaffold/templates/ are
// what the executable carries and what it writes, placeholders filled.
// (tests/install builds and runs what it writes against an installed SDK.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cli/scaffold/scaffold.hpp"
#include "cli/scaffold/templates.hpp"

namespace nudge::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path kTemplateDir = fs::path(NUDGE_SOURCE_DIR) / "runtime" / "cli" / "scaffold" / "templates";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("nudge-scaffold-test-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

TEST(ScaffoldTemplates, TheExecutableCarriesExactlyTheFilesInTheTree) {
  std::map<std::string, std::string> tree;
  for (const auto& entry : fs::recursive_directory_iterator(kTemplateDir))
    if (entry.is_regular_file()) tree[fs::relative(entry.path(), kTemplateDir).generic_string()] = read_file(entry);
  std::map<std::string, std::string> embedded;
  for (const auto& t : scaffold_templates()) embedded[std::string(t.path)] = std::string(t.text);
  ASSERT_EQ(embedded.size(), tree.size());
  for (const auto& [path, text] : tree) {
    ASSERT_TRUE(embedded.contains(path)) << path;
    EXPECT_EQ(embedded[path], text) << path << " differs from the copy built into nudge";
  }
}

TEST(ScaffoldTemplates, EachKindWritesItsTemplatesWithEveryPlaceholderFilled) {
  const std::map<std::string, std::string> interfaces{
      {"source", "Source"}, {"transform", "Transform"}, {"fanout", "Fanout"}, {"log", "Log"}, {"sink", "Sink"}};
  for (const auto& [kind, interface] : interfaces) {
    SCOPED_TRACE(kind);
    TempDir dir;
    const std::string name = "my_" + kind;
    const std::map<std::string, std::string> values{
        {"@name@", name}, {"@kind@", kind}, {"@Kind@", interface}, {"@Class@", "My" + interface + interface}};
    auto fill = [&](std::string text) {
      for (const auto& [key, value] : values) text = replace_all(text, key, value);
      return text;
    };

    // What the tree says should be written: common/ and <kind>/, `_x` files
    // spliced in at @x@ rather than written.
    std::map<std::string, std::string> fragments;
    std::map<std::string, std::string> expected;
    for (const std::string part : {"common", kind.c_str()}) {
      for (const auto& entry : fs::recursive_directory_iterator(kTemplateDir / part)) {
        if (!entry.is_regular_file()) continue;
        std::string relative = fs::relative(entry.path(), kTemplateDir / part).generic_string();
        ASSERT_TRUE(relative.ends_with(".in")) << relative;
        relative.resize(relative.size() - 3);
        std::string text = read_file(entry);
        if (relative.starts_with("_")) {
          text.pop_back();  // the newline that ends the file, not the fragment
          fragments["@" + relative.substr(1, relative.find('.') - 1) + "@"] = text;
        } else {
          expected[fill(relative)] = text;
        }
      }
    }
    ASSERT_EQ(fragments.size(), 2u) << "the README's @example@ and @keys@";
    for (auto& [path, text] : expected) {
      for (const auto& [placeholder, fragment] : fragments) text = replace_all(text, placeholder, fragment);
      text = fill(text);
    }

    const auto written = write_plugin_scaffold({name, kind, dir.path});
    std::set<std::string> listed;
    for (const auto& f : written) listed.insert(f.generic_string());
    std::set<std::string> on_disk;
    for (const auto& entry : fs::recursive_directory_iterator(dir.path))
      if (entry.is_regular_file()) on_disk.insert(fs::relative(entry.path(), dir.path).generic_string());
    std::set<std::string> wanted;
    for (const auto& [path, text] : expected) wanted.insert(path);
    EXPECT_EQ(listed, wanted);
    EXPECT_EQ(on_disk, wanted);
    for (const auto& [path, text] : expected) {
      const std::string got = read_file(dir.path / path);
      EXPECT_EQ(got, text) << path;
      EXPECT_FALSE(std::regex_search(got, std::regex("@[A-Za-z_]+@"))) << path << " keeps a placeholder";
    }
    EXPECT_NE(read_file(dir.path / "src" / (name + "_" + kind + ".hpp"))
                  .find("class My" + interface + interface + " final : public nudge::" + interface),
              std::string::npos);
    EXPECT_NE(read_file(dir.path / "README.md").find("[" + kind + "." + name + "]\n"), std::string::npos);
  }
}

TEST(ScaffoldTemplates, OnlyTheFiveKindsAreKinds) {
  TempDir dir;
  for (const std::string kind : {"common", "sinks", ""}) {
    const auto problems = scaffold_problems({"ok", kind, dir.path});
    ASSERT_EQ(problems.size(), 1u) << kind;
    EXPECT_NE(problems[0].find("--kind must be"), std::string::npos);
  }
  for (const std::string kind : {"source", "transform", "fanout", "log", "sink"})
    EXPECT_TRUE(scaffold_problems({"ok", kind, dir.path}).empty()) << kind;
}

}  // namespace
}  // namespace nudge::runtime
