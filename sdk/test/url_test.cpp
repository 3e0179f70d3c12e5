#include <string>

#include <gtest/gtest.h>

#include "nudge/sdk/url.hpp"

namespace nudge {
namespace {

using Part = UrlError::Part;

const ServerUrlForm kRedisLike{{"redis"}, true, 6379, true, false, false};

ServerUrl ok(const std::string& text, const ServerUrlForm& form = kRedisLike) {
  UrlError error;
  auto url = parse_server_url(text, form, error);
  EXPECT_TRUE(url) << text << ": " << error.describe();
  return url.value_or(ServerUrl{});
}

UrlError refused(const std::string& text, const ServerUrlForm& form = kRedisLike) {
  UrlError error;
  auto url = parse_server_url(text, form, error);
  EXPECT_FALSE(url) << text << " parsed, host '" << (url ? url->host : "") << "'";
  return error;
}

TEST(ServerUrlTest, HostPortAndTheDefaultPort) {
  const auto plain = ok("redis://127.0.0.1:6380");
  EXPECT_EQ(plain.scheme, "redis");
  EXPECT_EQ(plain.host, "127.0.0.1");
  EXPECT_EQ(plain.port, 6380);
  EXPECT_TRUE(plain.has_port);
  EXPECT_FALSE(plain.has_userinfo);
  EXPECT_EQ(plain.endpoint(), "127.0.0.1:6380");

  const auto name = ok("redis://cache-1.internal_zone");
  EXPECT_EQ(name.host, "cache-1.internal_zone");
  EXPECT_FALSE(name.has_port);
  EXPECT_EQ(name.port, 6379) << "the form's default port";

  EXPECT_EQ(ok("REDIS://Host:1").host, "Host") << "scheme case ignored, host kept as written";
  EXPECT_EQ(ok("REDIS://Host:1").scheme, "redis");
}

TEST(ServerUrlTest, Ipv6LiteralsInBrackets) {
  const auto v6 = ok("redis://[::1]:7000/2");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_TRUE(v6.host_is_ipv6);
  EXPECT_EQ(v6.port, 7000);
  EXPECT_EQ(v6.endpoint(), "[::1]:7000");
  EXPECT_EQ(ok("redis://[fe80::1]").port, 6379);
  EXPECT_EQ(ok("redis://[::ffff:10.0.0.1]:1").host, "::ffff:10.0.0.1");

  EXPECT_EQ(refused("redis://[::1").part, Part::ipv6);
  EXPECT_EQ(refused("redis://[zz]:1").part, Part::ipv6);
  EXPECT_EQ(refused("redis://[::1]x").part, Part::ipv6);
  EXPECT_EQ(refused("redis://[1:2:3:4:5:6:7:8:9]").part, Part::ipv6);
  EXPECT_EQ(refused("redis://[::1]:").part, Part::port_empty);
}

TEST(ServerUrlTest, UserAndPasswordArePercentDecoded) {
  const auto acl = ok("redis://app:p%40ss%3Aw0rd@localhost/");
  EXPECT_TRUE(acl.has_userinfo);
  EXPECT_EQ(acl.user, "app");
  EXPECT_TRUE(acl.has_password);
  EXPECT_EQ(acl.password, "p@ss:w0rd");

  const auto password_only = ok("redis://:s3cret@h");
  EXPECT_EQ(password_only.user, "");
  EXPECT_EQ(password_only.password, "s3cret");

  const auto token = ok("redis://t0ken@h");
  EXPECT_TRUE(token.has_userinfo);
  EXPECT_FALSE(token.has_password);
  EXPECT_EQ(token.user, "t0ken");

  const auto empty = ok("redis://:@h");
  EXPECT_TRUE(empty.has_password);
  EXPECT_EQ(empty.password, "");

  // Written for the parsers before Boost.URL: the last '@' ends the user
  // part, a space or a second ':' is part of the password.
  EXPECT_EQ(ok("redis://u:a@b@h").password, "a@b");
  EXPECT_EQ(ok("redis://u:a b:c@h").password, "a b:c");
  EXPECT_EQ(ok("redis://u:%F0%9F%98%80@h").password, "\xf0\x9f\x98\x80");

  EXPECT_EQ(refused("redis://:bad%zzpw@host").part, Part::userinfo);
  EXPECT_EQ(refused("redis://:bad%4@host").part, Part::userinfo);
  EXPECT_EQ(refused("redis://u%@host").part, Part::userinfo);
}

TEST(ServerUrlTest, HostsAndPortsAreChecked) {
  EXPECT_EQ(refused("redis://").part, Part::host_empty);
  EXPECT_EQ(refused("redis://:6379").part, Part::host_empty);
  EXPECT_EQ(refused("redis://u:p@").part, Part::host_empty);
  const auto space = refused("redis://ho st");
  EXPECT_EQ(space.part, Part::host_name);
  EXPECT_EQ(space.text, "ho st");
  EXPECT_EQ(refused("redis://h*st").part, Part::host_name) << "a sub-delim RFC 3986 allows, no host name has";
  EXPECT_EQ(refused("redis://h%41st").part, Part::host_name);
  EXPECT_EQ(refused("redis://" + std::string(254, 'a')).part, Part::host_name);
  EXPECT_EQ(refused("redis://host:").part, Part::port_empty);
  for (const char* port : {"0", "65536", "12ab", "-1", "99999999999"}) {
    const auto error = refused(std::string("redis://host:") + port);
    EXPECT_EQ(error.part, Part::port) << port;
    EXPECT_EQ(error.text, port);
  }
  EXPECT_EQ(ok("redis://host:65535").port, 65535);
  EXPECT_EQ(ok("redis://host:1").port, 1);
}

TEST(ServerUrlTest, SchemesAreThoseOfTheForm) {
  const auto none = refused("127.0.0.1:6379");
  EXPECT_EQ(none.part, Part::scheme);
  EXPECT_EQ(none.text, "");
  const auto other = refused("rediss://h");
  EXPECT_EQ(other.part, Part::scheme);
  EXPECT_EQ(other.text, "rediss") << "so a plugin can say TLS is not supported";
  EXPECT_EQ(refused("").part, Part::empty);

  ServerUrlForm strict{{"mysql", "mariadb"}, false, 3306, true, false, false};
  EXPECT_EQ(ok("mariadb://u@h/db", strict).scheme, "mariadb");
  EXPECT_EQ(refused("MYSQL://u@h/db", strict).part, Part::scheme);

  ServerUrlForm any{{}, true, 0, true, true, true};
  EXPECT_EQ(ok("postgresql://nudge:nudge@127.0.0.1:5432/nudge", any).endpoint(), "127.0.0.1:5432");
  EXPECT_EQ(refused("1x://h", any).part, Part::scheme);
}

TEST(ServerUrlTest, PathQueryAndFragmentFollowTheForm) {
  const auto db = ok("redis://h/my%20db");
  EXPECT_EQ(db.path, "my db");
  EXPECT_EQ(ok("redis://h/").path, "");
  EXPECT_EQ(ok("redis://h/1/2").path, "1/2");
  EXPECT_EQ(refused("redis://h?db=1").part, Part::query_not_allowed);
  EXPECT_EQ(refused("redis://h/0#x").part, Part::query_not_allowed);
  EXPECT_EQ(refused("redis://h/d%zz").part, Part::path);
  EXPECT_EQ(refused("redis://h/db%").part, Part::path);

  ServerUrlForm no_path{{"nats"}, true, 4222, false, false, false};
  EXPECT_EQ(refused("nats://h/", no_path).part, Part::path_not_allowed);
  EXPECT_EQ(refused("nats://h:4222/x", no_path).part, Part::path_not_allowed);
  EXPECT_EQ(refused("nats://h?x=1", no_path).part, Part::query_not_allowed);

  ServerUrlForm ws{{"ws", "http"}, true, 80, true, true, false};
  const auto target = ok("ws://[::1]:9000/socket.io/?EIO=4&transport=websocket&x=a%20b&flag", ws);
  EXPECT_EQ(target.target, "/socket.io/?EIO=4&transport=websocket&x=a%20b&flag") << "as written, not decoded";
  ASSERT_EQ(target.query.size(), 4u);
  EXPECT_EQ(target.query[0], (std::pair<std::string, std::string>{"EIO", "4"}));
  EXPECT_EQ(target.query[2], (std::pair<std::string, std::string>{"x", "a b"}));
  EXPECT_EQ(target.query[3], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(ok("ws://h", ws).target, "/");
  EXPECT_EQ(ok("ws://h?a=1", ws).target, "/?a=1");
}

TEST(ServerUrlTest, DescribeNamesThePartAndWhatWasExpected) {
  EXPECT_NE(refused("redis://host:0").describe().find("port must be a number in [1, 65535], got \"0\""),
            std::string::npos);
  EXPECT_NE(refused("redis://").describe().find("host is empty"), std::string::npos);
  EXPECT_NE(refused("redis://[zz]").describe().find("IPv6"), std::string::npos);
  EXPECT_NE(refused("redis://:%zz@h").describe().find("percent-encoding"), std::string::npos);
}

TEST(PercentDecodeTest, DecodesEscapesAndRefusesBrokenOnes) {
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_EQ(percent_decode("plain"), "plain");
  EXPECT_EQ(percent_decode("a%20b%2Fc%2fd"), "a b/c/d");
  EXPECT_EQ(percent_decode("a+b"), "a+b") << "'+' is not a space outside HTML forms";
  EXPECT_EQ(percent_decode("%00"), std::string(1, '\0'));
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_FALSE(percent_decode("ok%g0"));
}

TEST(JoinHostPortTest, BracketsIpv6Hosts) {
  EXPECT_EQ(join_host_port("::1", 80), "[::1]:80");
  EXPECT_EQ(join_host_port("example.com", 443), "example.com:443");
}

}  // namespace
}  // namespace nudge
