#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api.hpp"

namespace nudge::plugins::http {
namespace {

using ::testing::HasSubstr;

TEST(HttpApi, RoutesNameTheRoomSegmentDecoded) {
  std::string room;
  EXPECT_EQ(route_of("/api/rooms/general/messages", room), Route::room_messages);
  EXPECT_EQ(room, "general");
  EXPECT_EQ(route_of("/api/rooms/team%3Aops/messages?x=1", room), Route::room_messages);
  EXPECT_EQ(room, "team:ops");
  EXPECT_EQ(route_of("/api/messages", room), Route::batch);
  EXPECT_EQ(route_of("/api/rooms//messages", room), Route::unknown);
  EXPECT_EQ(route_of("/api/rooms/a/b/messages", room), Route::unknown);
  EXPECT_EQ(route_of("/api/rooms/a%2/messages", room), Route::unknown);
  EXPECT_EQ(route_of("/messages", room), Route::unknown);
}

TEST(HttpApi, AMessageNeedsTextAndAValidRoomAndKnowsNoOtherFields) {
  std::string error;
  auto draft = parse_message(R"({"text":"hi","sender":"billing","idempotency_key":"k-1"})", "general", error);
  ASSERT_TRUE(draft) << error;
  EXPECT_EQ(draft->room, "general");
  EXPECT_EQ(draft->text, "hi");
  EXPECT_EQ(draft->sender, "billing");
  EXPECT_EQ(draft->idempotency_key, "k-1");
  EXPECT_FALSE(parse_message(R"({"text":"hi"})", "no spaces", error));
  EXPECT_THAT(error, HasSubstr("invalid room name"));
  EXPECT_FALSE(parse_message(R"({"text":""})", "general", error));
  EXPECT_FALSE(parse_message(R"({"txt":"hi"})", "general", error));
  EXPECT_THAT(error, HasSubstr("unknown field 'txt'"));
  EXPECT_FALSE(parse_message(R"({"text":5})", "general", error));
  EXPECT_FALSE(parse_message(R"([1,2)", "general", error));
  EXPECT_THAT(error, HasSubstr("not valid JSON"));
  EXPECT_FALSE(parse_message("{\"text\":\"\xff\"}", "general", error)) << "invalid UTF-8";
  EXPECT_FALSE(parse_message(R"({"text":"hi","sender":"a\u0007b"})", "general", error));
  EXPECT_FALSE(parse_message(R"({"text":"hi","idempotency_key":"has space"})", "general", error));
  // Deep nesting is an error, not a stack overflow.
  EXPECT_FALSE(parse_message(std::string(100000, '['), "general", error));
}

TEST(HttpApi, ATextThatDecodesToInvalidUtf8IsRefused) {
  std::string error;
  // The body is valid UTF-8; "\udc00" alone decodes to ED B0 80, which is not.
  EXPECT_FALSE(parse_message(R"({"text":"A\udc00B"})", "general", error));
  EXPECT_THAT(error, HasSubstr("not valid UTF-8"));
  EXPECT_FALSE(parse_message(R"({"text":"A\ud800"})", "general", error));
  EXPECT_FALSE(parse_message(R"({"text":"hi","sender":"x\udc00"})", "general", error));
  bool too_many = false;
  auto items = parse_batch(R"({"messages":[{"room":"a","text":"\udc00"}]})", 10, error, too_many);
  ASSERT_TRUE(items);
  EXPECT_FALSE((*items)[0].draft);
  EXPECT_THAT((*items)[0].error, HasSubstr("not valid UTF-8"));
  auto paired = parse_message(R"({"text":"\ud83d\ude00"})", "general", error);
  ASSERT_TRUE(paired) << error;
  EXPECT_EQ(paired->text, "\xF0\x9F\x98\x80") << "a whole pair is one character";
}

TEST(HttpApi, ASenderFollowsTheWebsocketNameRules) {
  // Each looks like another name, or like nothing, on a page.
  for (const std::string& bad :
       std::vector<std::string>{"\u202Eadmin", "ad\u200Bmin", "\uFEFFadmin", " admin", "admin ", "\u00A0admin",
                                "\u0301admin", "admin\U000E0041", std::string(65, 'a')}) {
    std::string error;
    EXPECT_FALSE(is_valid_sender(bad)) << bad;
    EXPECT_FALSE(parse_message(R"({"text":"hi","sender":")" + bad + "\"}", "general", error)) << bad;
    EXPECT_THAT(error, HasSubstr("invalid sender"));
  }
  for (const std::string good : {"billing", "Zoë", "日本", "a b", "x\u0301"})
    EXPECT_TRUE(is_valid_sender(good)) << good;
}

TEST(HttpApi, AnObjectNamingAFieldTwiceIsRefused) {
  std::string error;
  EXPECT_FALSE(parse_message(R"({"text":"FIRST","text":"SECOND"})", "general", error));
  EXPECT_THAT(error, HasSubstr("duplicate key 'text'"));
  EXPECT_FALSE(parse_message(R"({"text":"a","sender":"x","sender":"y"})", "general", error));
  EXPECT_THAT(error, HasSubstr("duplicate key 'sender'"));
  bool too_many = false;
  auto items =
      parse_batch(R"({"messages":[{"room":"a","room":"b","text":"x"},{"room":"a","text":"y"}]})", 10, error, too_many);
  ASSERT_TRUE(items);
  EXPECT_FALSE((*items)[0].draft);
  EXPECT_THAT((*items)[0].error, HasSubstr("duplicate key 'room'"));
  EXPECT_TRUE((*items)[1].draft);
  EXPECT_FALSE(parse_message(R"({"text":"a","room":"b"})", "general", error)) << "room is not a field of this route";
  EXPECT_THAT(error, HasSubstr("unknown field 'room'"));
}

TEST(HttpApi, ABatchRefusesBadItemsAloneAndTooManyItemsAsAWhole) {
  std::string error;
  bool too_many = false;
  auto items = parse_batch(R"({"messages":[{"room":"a","text":"x"},{"room":"b c","text":"y"},{"text":"z"}]})", 10,
                           error, too_many);
  ASSERT_TRUE(items) << error;
  ASSERT_EQ(items->size(), 3u);
  EXPECT_TRUE((*items)[0].draft);
  EXPECT_FALSE((*items)[1].draft);
  EXPECT_THAT((*items)[1].error, HasSubstr("invalid room name"));
  EXPECT_FALSE((*items)[2].draft);
  EXPECT_THAT((*items)[2].error, HasSubstr("room"));
  EXPECT_FALSE(parse_batch(R"({"messages":[{"room":"a","text":"x"},{"room":"a","text":"y"}]})", 1, error, too_many));
  EXPECT_TRUE(too_many);
  EXPECT_FALSE(parse_batch(R"({"messages":[]})", 10, error, too_many));
  EXPECT_FALSE(too_many);
  EXPECT_FALSE(parse_batch(R"({"msgs":[]})", 10, error, too_many));
}

TEST(HttpApi, KeysAreTakenFromBearerOrXApiKeyAndMatchedExactly) {
  EXPECT_EQ(presented_key("Bearer abc", ""), "abc");
  EXPECT_EQ(presented_key("bearer abc", "zzz"), "abc");
  EXPECT_EQ(presented_key("", "zzz"), "zzz");
  EXPECT_EQ(presented_key("Basic abc", "zzz"), "zzz");
  const std::vector<std::string> keys = {"first-key-0123456789", "second-key-012345678"};
  EXPECT_EQ(match_api_key("second-key-012345678", keys), 1);
  EXPECT_EQ(match_api_key("second-key-01234567", keys), -1);
  EXPECT_EQ(match_api_key("second-key-0123456789", keys), -1);
  EXPECT_EQ(match_api_key("", keys), -1);
  EXPECT_EQ(key_fingerprint("first-key-0123456789").size(), 16u);
  EXPECT_NE(key_fingerprint("first-key-0123456789"), key_fingerprint("second-key-012345678"));
}

TEST(HttpApi, ErrorsAreJsonWithACodeAndTheirStatus) {
  EXPECT_EQ(error_body(ApiError::too_large, "the \"body\" is big"),
            R"({"error":{"code":"too_large","message":"the \"body\" is big"}})");
  EXPECT_EQ(http_status(ApiError::bad_request), 400u);
  EXPECT_EQ(http_status(ApiError::unauthorized), 401u);
  EXPECT_EQ(http_status(ApiError::too_large), 413u);
  EXPECT_EQ(http_status(ApiError::rejected), 422u);
  EXPECT_EQ(http_status(ApiError::rate_limited), 429u);
  EXPECT_EQ(http_status(ApiError::unavailable), 503u);
}

TEST(HttpApi, AUuidV7KeyGivesTheSameIdOnEveryInstanceAndAnotherCallerAnother) {
  const std::int64_t now = 1'800'000'000'000;
  // A UUIDv7 made 2 s ago.
  std::array<std::uint8_t, 16> bytes{};
  const std::int64_t at = now - 2000;
  for (int i = 0; i < 6; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(at >> (8 * (5 - i)));
  bytes[6] = 0x71;
  bytes[8] = 0x9a;
  bytes[15] = 0x42;
  const std::string key = MessageId(bytes).to_string();
  bool out = false;
  const auto a = derived_id("scope-a", key, now, 300000, out);
  ASSERT_TRUE(a);
  EXPECT_FALSE(out);
  EXPECT_EQ(a->unix_ms(), at) << "the id sorts where the key's time is";
  EXPECT_EQ(a->bytes()[6] >> 4, 7) << "a UUIDv7";
  EXPECT_EQ(a->bytes()[8] & 0xC0, 0x80) << "RFC 9562 variant";
  EXPECT_EQ(*derived_id("scope-a", key, now + 5000, 300000, out), *a) << "a resend later, elsewhere: the same id";
  EXPECT_NE(*derived_id("scope-b", key, now, 300000, out), *a) << "another key's caller: another id";
  EXPECT_NE(*a, MessageId(bytes)) << "not the key itself: a caller cannot pick another's id";
  EXPECT_FALSE(derived_id("scope-a", key, now + 400000, 300000, out));
  EXPECT_TRUE(out) << "older than the window";
  EXPECT_FALSE(derived_id("scope-a", "order-42", now, 300000, out));
  EXPECT_FALSE(out) << "any other key is remembered per instance";
}

}  // namespace
}  // namespace nudge::plugins::http
