#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <dlfcn.h>

#include "engine/plugin_registry.hpp"

namespace nudge::runtime {
namespace {

using ::testing::HasSubstr;

TEST(PluginRegistry, DiscoversPluginsByFileNameFirstDirectoryWins) {
  PluginRegistry registry({NUDGE_TEST_PLUGIN_DIR, NUDGE_BUILD_PLUGIN_DIR});
  std::vector<std::string> names;
  for (const auto& f : registry.discover()) names.push_back(std::string(to_string(f.kind)) + "." + f.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "sink.testsink"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "source.websocket"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "fanout.memory"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "sink.sqlite"), names.end());
}

TEST(PluginRegistry, LoadsAPluginAndReadsItsDescriptor) {
  PluginRegistry registry({NUDGE_TEST_PLUGIN_DIR});
  std::string error;
  auto plugin = registry.load(PluginKind::sink, "testsink", error);
  ASSERT_TRUE(plugin) << error;
  EXPECT_EQ(plugin->name(), "testsink");
  EXPECT_EQ(plugin->kind(), PluginKind::sink);
  EXPECT_STREQ(plugin->descriptor->version, "9.9.9");
  EXPECT_NE(plugin->descriptor->schema().find("path"), nullptr);
}

TEST(PluginRegistry, OneNameCanBeAPluginOfEachKind) {
  // Like a `kafka` source beside the `kafka` log: the kind tells them apart.
  PluginRegistry registry({NUDGE_TEST_PLUGIN_DIR});
  std::string error;
  auto source = registry.load(PluginKind::source, "scripted", error);
  ASSERT_TRUE(source) << error;
  auto log = registry.load(PluginKind::log, "scripted", error);
  ASSERT_TRUE(log) << error;
  EXPECT_EQ(source->kind(), PluginKind::source);
  EXPECT_EQ(log->kind(), PluginKind::log);
  EXPECT_FALSE(registry.load(PluginKind::sink, "scripted", error));
  // Which of its other kinds the message names depends on the folder's order.
  EXPECT_THAT(error, HasSubstr("plugin 'scripted' is a "));
  EXPECT_THAT(error, HasSubstr(" plugin, not a sink"));
}

TEST(PluginRegistry, RefusesAPluginBuiltAgainstAnotherAbi) {
  std::string error;
  auto plugin = PluginRegistry::load_file(std::string(NUDGE_TEST_PLUGIN_DIR) + "/nudge-sink-wrongabi.so", error);
  EXPECT_FALSE(plugin);
  EXPECT_THAT(error, HasSubstr("SDK ABI version " + std::to_string(kAbiVersion + 41)));
}

TEST(PluginRegistry, ANonPluginLibraryIsRefusedClearly) {
  std::string error;
  EXPECT_FALSE(PluginRegistry::load_file("/does/not/exist/nudge-sink-x.so", error));
  EXPECT_THAT(error, HasSubstr("cannot load plugin library"));
}

/// Whether `file` (a path, or a soname) is mapped in this process now; loads nothing.
bool mapped(const std::string& file) {
  void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle) ::dlclose(handle);
  return handle != nullptr;
}

TEST(PluginRegistry, APluginStaysMappedAfterItsLastHandleGoes) {
  // Code a plugin started may still run after its objects are gone (threads
  // of a library it pulled in); unmapping it under them crashes the process.
  // Built without GNU unique symbols, so glibc alone would unmap it.
  const std::string path = std::string(NUDGE_TEST_PLUGIN_DIR) + "/nudge-sink-plain.so";
  std::string error;
  auto plugin = PluginRegistry::load_file(path, error);
  ASSERT_TRUE(plugin) << error;
  ASSERT_TRUE(mapped(path));
  plugin.reset();
  EXPECT_TRUE(mapped(path));
}

TEST(PluginRegistry, SearchPathIsFlagsThenEnvironmentThenInstallFolder) {
  ::setenv("NUDGE_PLUGIN_PATH", "/env/one:/env/two", 1);
  const auto path = PluginRegistry::default_search_path({"/flag"});
  ::unsetenv("NUDGE_PLUGIN_PATH");
  ASSERT_EQ(path.size(), 4u);
  EXPECT_EQ(path[0], "/flag");
  EXPECT_EQ(path[1], "/env/one");
  EXPECT_EQ(path[2], "/env/two");
  EXPECT_EQ(path[3].filename(), "plugins") << path[3];
}

}  // namespace
}  // namespace nudge::runtime
