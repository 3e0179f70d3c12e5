#include "static_files.hpp"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace nudge::plugins::websocket {
namespace {

namespace fs = std::filesystem;

/// A served folder with a page, a subfolder, a secret beside it, and links
/// pointing in and out; removed at the end.
class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("nudge-static-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    root_ = base_ / "web";
    fs::create_directories(root_ / "css");
    write(root_ / "index.html", "page");
    write(root_ / "css" / "site.css", "css");
    write(root_ / ".env", "hidden");
    write(base_ / "secret.toml", "password");
    fs::create_symlink(base_ / "secret.toml", root_ / "leak.toml");       // out of the folder
    fs::create_symlink("/etc", root_ / "etc");                            // a folder out of it
    fs::create_symlink(root_ / "css" / "site.css", root_ / "style.css");  // inside: fine
    root_ = fs::canonical(root_);
  }
  void TearDown() override { fs::remove_all(base_); }

  static void write(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }
  std::optional<fs::path> resolve(std::string_view target) const { return resolve_static_path(root_, target); }

  fs::path base_;
  fs::path root_;
};

TEST_F(StaticFilesTest, ServesFilesUnderTheRoot) {
  EXPECT_EQ(resolve("/"), root_ / "index.html");
  EXPECT_EQ(resolve("/index.html?v=1#top"), root_ / "index.html");
  EXPECT_EQ(resolve("/css/site.css"), root_ / "css" / "site.css");
  EXPECT_EQ(resolve("/css//site.css"), root_ / "css" / "site.css") << "a doubled slash is one";
  EXPECT_EQ(resolve("/style.css"), root_ / "css" / "site.css") << "a link that stays inside is followed";
}

TEST_F(StaticFilesTest, ADoubledSlashNeverReachesTheFileSystemRoot) {
  // The hole found from outside: `GET //etc/passwd` joined an absolute path onto the root.
  EXPECT_FALSE(resolve("//etc/passwd"));
  EXPECT_FALSE(resolve("///etc/passwd"));
  EXPECT_FALSE(resolve("//" + (base_ / "secret.toml").string()));
  EXPECT_FALSE(resolve("/" + (base_ / "secret.toml").string()));
}

TEST_F(StaticFilesTest, DotSegmentsAreRefused) {
  for (const char* target : {"/../secret.toml", "/css/../../secret.toml", "/css/../index.html", "/./index.html", "/..",
                             "/.", "/css/..", "/..%2fsecret.toml"})
    EXPECT_FALSE(resolve(target)) << target;
}

TEST_F(StaticFilesTest, EncodedEscapedAndControlBytesAreRefused) {
  for (const char* target :
       {"/%2e%2e/secret.toml", "/%2E%2E%2Fsecret.toml", "/%2fetc%2fpasswd", "/index%2ehtml", "/..\\secret.toml",
        "/css\\..\\..\\secret.toml", "/\\etc\\passwd", "/c:/windows", "/index.html\x01", "/\x7f"})
    EXPECT_FALSE(resolve(target)) << target;
  EXPECT_FALSE(resolve(std::string_view("/index.html\0.png", 16))) << "a NUL byte";
}

TEST_F(StaticFilesTest, HiddenFilesAreRefused) {
  EXPECT_FALSE(resolve("/.env"));
  EXPECT_FALSE(resolve("/css/.git/config"));
}

TEST_F(StaticFilesTest, LinksLeadingOutOfTheFolderAreNotFollowed) {
  EXPECT_FALSE(resolve("/leak.toml"));
  EXPECT_FALSE(resolve("/etc/passwd"));
  EXPECT_FALSE(resolve("/etc/hostname"));
}

TEST_F(StaticFilesTest, LongPathsAreRefusedUnread) {
  std::string deep;
  while (deep.size() <= kMaxStaticPathBytes) deep += "/css";
  EXPECT_FALSE(resolve(deep + "/site.css"));
  EXPECT_FALSE(resolve("/" + std::string(100000, 'a')));
  std::string many_slashes(kMaxStaticPathBytes - 20, '/');
  EXPECT_EQ(resolve(many_slashes + "index.html"), root_ / "index.html");
}

TEST_F(StaticFilesTest, NothingWithoutARootAMissingFileOrAFolder) {
  EXPECT_FALSE(resolve_static_path("", "/"));
  EXPECT_FALSE(resolve_static_path(base_ / "missing", "/"));
  EXPECT_FALSE(resolve("/missing.html"));
  EXPECT_FALSE(resolve("/css"));
  EXPECT_FALSE(resolve("relative"));
  EXPECT_FALSE(resolve(""));
}

TEST(StaticFiles, ContentTypes) {
  EXPECT_EQ(content_type_for("a.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(content_type_for("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(content_type_for("blob"), "application/octet-stream");
}

}  // namespace
}  // namespace nudge::plugins::websocket
