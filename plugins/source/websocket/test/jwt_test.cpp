#include <gtest/gtest.h>

#include "jwt.hpp"

// The verifier itself is tested with the SDK (sdk/test/jwt_test.cpp).

namespace nudge::plugins::websocket {
namespace {

TEST(Jwt, TokenComesFromTheBearerHeaderElseTheQuery) {
  EXPECT_EQ(token_from_request("Bearer abc.def.ghi", "/ws"), "abc.def.ghi");
  EXPECT_EQ(token_from_request("bearer   abc ", "/ws?token=other"), "abc");
  EXPECT_EQ(token_from_request("", "/ws?token=abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(token_from_request("", "/ws?room=x&token=a%2Eb.c&z=1"), "a.b.c");
  EXPECT_EQ(token_from_request("Basic dXNlcjpwYXNz", "/ws?token=q"), "q");
  EXPECT_EQ(token_from_request("", "/ws?tokens=q"), "");
  EXPECT_EQ(token_from_request("", "/ws"), "");
  EXPECT_EQ(token_from_request("Bearer", "/ws"), "");
  EXPECT_EQ(token_from_request("", "/ws?token=%zz"), "%zz");  // broken escape: left as is, fails as malformed
}

}  // namespace
}  // namespace nudge::plugins::websocket
