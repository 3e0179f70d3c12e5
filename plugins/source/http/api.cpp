#include "api.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "nudge/sdk/text.hpp"

namespace nudge::plugins::http {

namespace {

// Iterative: nesting depth costs heap, not stack, so `[[[[...` cannot overflow the stack.
constexpr unsigned kJsonParseFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

std::string json_string(std::string_view text) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decodes a path segment; nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

/// A string member of `object`: nullptr when absent; `wrong` set when present but not a string.
const rapidjson::Value* string_member(const rapidjson::Value& object, const char* name, bool& wrong) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd() || it->value.IsNull()) return nullptr;
  if (!it->value.IsString()) {
    wrong = true;
    return nullptr;
  }
  return &it->value;
}

std::string text_of(const rapidjson::Value* v) {
  return v ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

/// Reads one message object into `out`; false and `error` when it is not right.
bool read_draft(const rapidjson::Value& object, bool room_in_body, Draft& out, std::string& error) {
  if (!object.IsObject()) {
    error = "a message must be a JSON object";
    return false;
  }
  // A name given twice is refused: parsers differ on which value wins (the
  // first here, the last in most), so a gateway in front could check one
  // text and this source publish the other.
  static constexpr std::array<std::string_view, 4> kFields = {"text", "sender", "idempotency_key", "room"};
  std::array<bool, kFields.size()> seen{};
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    const std::string_view name(it->name.GetString(), it->name.GetStringLength());
    const auto field = std::find(kFields.begin(), kFields.end(), name);
    if (field == kFields.end() || (*field == "room" && !room_in_body)) {
      error = "unknown field '" + std::string(name) + "'";
      return false;
    }
    auto& was_seen = seen[static_cast<std::size_t>(field - kFields.begin())];
    if (was_seen) {
      error = "duplicate key '" + std::string(name) + "'";
      return false;
    }
    was_seen = true;
  }
  bool wrong = false;
  const auto* text = string_member(object, "text", wrong);
  const auto* sender = string_member(object, "sender", wrong);
  const auto* key = string_member(object, "idempotency_key", wrong);
  const auto* room = room_in_body ? string_member(object, "room", wrong) : nullptr;
  if (wrong) {
    error = "text, sender, idempotency_key and room must be strings";
    return false;
  }
  if (room_in_body) {
    if (!room) {
      error = "each message needs a \"room\"";
      return false;
    }
    out.room = text_of(room);
    if (!is_valid_room(out.room)) {
      error = "invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :";
      return false;
    }
  }
  if (!text || text->GetStringLength() == 0) {
    error = "a message needs a non-empty \"text\"";
    return false;
  }
  out.text = text_of(text);
  // The body was valid UTF-8, but an escape of half a surrogate pair
  // ("\udc00") decodes to bytes that are not: no client could be sent them.
  if (!is_valid_utf8(out.text)) {
    error = "text is not valid UTF-8 once decoded (an unpaired surrogate escape such as \\udc00?)";
    return false;
  }
  out.sender = text_of(sender);
  if (sender && !is_valid_sender(out.sender)) {
    error =
        "invalid sender: 1 to 64 bytes of UTF-8 with no space at either end and no control, bidirectional or "
        "invisible formatting characters";
    return false;
  }
  out.idempotency_key = text_of(key);
  if (key && !is_valid_idempotency_key(out.idempotency_key)) {
    error = "invalid idempotency_key: 1 to 128 visible ASCII characters";
    return false;
  }
  return true;
}

bool parse_json(std::string_view body, rapidjson::Document& doc, std::string& error) {
  doc.Parse<kJsonParseFlags>(body.data(), body.size());
  if (doc.HasParseError()) {
    error = std::string("not valid JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
            std::to_string(doc.GetErrorOffset());
    return false;
  }
  return true;
}

}  // namespace

std::string_view to_string(ApiError error) noexcept {
  switch (error) {
    case ApiError::bad_request:
      return "bad_request";
    case ApiError::unauthorized:
      return "unauthorized";
    case ApiError::not_found:
      return "not_found";
    case ApiError::not_allowed:
      return "method_not_allowed";
    case ApiError::conflict:
      return "conflict";
    case ApiError::too_large:
      return "too_large";
    case ApiError::rejected:
      return "rejected";
    case ApiError::rate_limited:
      return "rate_limited";
    case ApiError::unavailable:
      return "unavailable";
  }
  return "unavailable";
}

unsigned http_status(ApiError error) noexcept {
  switch (error) {
    case ApiError::bad_request:
      return 400;
    case ApiError::unauthorized:
      return 401;
    case ApiError::not_found:
      return 404;
    case ApiError::not_allowed:
      return 405;
    case ApiError::conflict:
      return 409;
    case ApiError::too_large:
      return 413;
    case ApiError::rejected:
      return 422;
    case ApiError::rate_limited:
      return 429;
    case ApiError::unavailable:
      return 503;
  }
  return 503;
}

std::string error_body(ApiError error, std::string_view message) {
  return R"({"error":{"code":")" + std::string(to_string(error)) + R"(","message":)" + json_string(message) + "}}";
}

std::string id_body(const MessageId& id) { return R"({"id":")" + id.to_string() + "\"}"; }

Route route_of(std::string_view target, std::string& room) {
  if (const auto query = target.find('?'); query != std::string_view::npos) target = target.substr(0, query);
  if (target == "/api/messages") return Route::batch;
  constexpr std::string_view prefix = "/api/rooms/", suffix = "/messages";
  if (target.size() <= prefix.size() + suffix.size() || !target.starts_with(prefix) || !target.ends_with(suffix))
    return Route::unknown;
  const auto segment = target.substr(prefix.size(), target.size() - prefix.size() - suffix.size());
  if (segment.find('/') != std::string_view::npos) return Route::unknown;
  auto decoded = percent_decode(segment);
  if (!decoded) return Route::unknown;
  room = std::move(*decoded);
  return Route::room_messages;
}

bool is_valid_room(std::string_view room) noexcept {
  if (room.empty() || room.size() > 128) return false;
  for (char c : room) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

bool is_valid_sender(std::string_view sender) noexcept {
  // The websocket source's rule for a hello's name: a sender over HTTP shows
  // in the same rooms, so it may not look like another one either.
  return is_acceptable_display_name(sender);
}

bool is_valid_idempotency_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

std::optional<Draft> parse_message(std::string_view body, std::string room, std::string& error) {
  if (!is_valid_room(room)) {
    error = "invalid room name: use 1 to 128 characters of A-Z a-z 0-9 _ - . :";
    return std::nullopt;
  }
  rapidjson::Document doc;
  if (!parse_json(body, doc, error)) return std::nullopt;
  Draft draft;
  if (!read_draft(doc, false, draft, error)) return std::nullopt;
  draft.room = std::move(room);
  return draft;
}

std::optional<std::vector<BatchItem>> parse_batch(std::string_view body, std::size_t max_items, std::string& error,
                                                  bool& too_many) {
  too_many = false;
  rapidjson::Document doc;
  if (!parse_json(body, doc, error)) return std::nullopt;
  const bool shaped =
      doc.IsObject() && doc.MemberCount() == 1 && doc.HasMember("messages") && doc["messages"].IsArray();
  if (!shaped) {
    error = R"(expected {"messages": [{"room": ..., "text": ...}, ...]})";
    return std::nullopt;
  }
  const auto messages = doc.FindMember("messages");
  const auto& array = messages->value.GetArray();
  if (array.Size() == 0) {
    error = "\"messages\" is empty";
    return std::nullopt;
  }
  if (array.Size() > max_items) {
    too_many = true;
    error = "a batch holds at most " + std::to_string(max_items) + " messages, got " + std::to_string(array.Size());
    return std::nullopt;
  }
  std::vector<BatchItem> items(array.Size());
  for (rapidjson::SizeType i = 0; i < array.Size(); ++i) {
    Draft draft;
    if (read_draft(array[i], true, draft, items[i].error)) items[i].draft = std::move(draft);
  }
  return items;
}

int match_api_key(std::string_view presented, const std::vector<std::string>& keys) noexcept {
  int found = -1;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto& key = keys[i];
    // The length is not secret (keys are random and long); the bytes are.
    const bool same = presented.size() == key.size() && CRYPTO_memcmp(presented.data(), key.data(), key.size()) == 0;
    if (same && found < 0) found = static_cast<int>(i);
  }
  return found;
}

std::string_view presented_key(std::string_view authorization, std::string_view x_api_key) noexcept {
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.size() > bearer.size()) {
    bool is_bearer = true;
    for (std::size_t i = 0; i < bearer.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
          std::tolower(static_cast<unsigned char>(bearer[i])))
        is_bearer = false;
    if (is_bearer) return authorization.substr(bearer.size());
  }
  return x_api_key;
}

namespace {

std::array<unsigned char, 32> sha256(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::array<unsigned char, 32> out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int size = 0;
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  // Lengths first: ("ab", "c") and ("a", "bc") must hash apart.
  for (std::string_view part : {a, b, c}) {
    const std::uint64_t n = part.size();
    EVP_DigestUpdate(ctx, &n, sizeof n);
    EVP_DigestUpdate(ctx, part.data(), part.size());
  }
  EVP_DigestFinal_ex(ctx, out.data(), &size);
  EVP_MD_CTX_free(ctx);
  return out;
}

}  // namespace

std::string key_fingerprint(std::string_view key) {
  const auto digest = sha256("nudge-http-api-key", key);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < 8; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::optional<MessageId> derived_id(std::string_view scope, std::string_view key, std::int64_t now_ms,
                                    std::int64_t window_ms, bool& out_of_window) {
  out_of_window = false;
  const auto parsed = MessageId::parse(key);
  if (!parsed || (parsed->bytes()[6] >> 4) != 7 || (parsed->bytes()[8] & 0xC0) != 0x80) return std::nullopt;
  const std::int64_t at = parsed->unix_ms();
  if (at < now_ms - window_ms || at > now_ms + 60'000) {
    out_of_window = true;
    return std::nullopt;
  }
  const auto digest = sha256("nudge-http-idempotency", scope, parsed->to_string());
  std::array<std::uint8_t, 16> bytes{};
  for (int i = 0; i < 6; ++i) bytes[static_cast<std::size_t>(i)] = parsed->bytes()[static_cast<std::size_t>(i)];
  bytes[6] = static_cast<std::uint8_t>(0x70 | (digest[0] & 0x0f));
  bytes[7] = digest[1];
  bytes[8] = static_cast<std::uint8_t>(0x80 | (digest[2] & 0x3f));
  for (std::size_t i = 9; i < 16; ++i) bytes[i] = digest[i - 6];
  return MessageId(bytes);
}

}  // namespace nudge::plugins::http
