#pragma once

#include <string>
#include <string_view>

#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace nudge::plugins::websocket {

/// The JSON writer of both protocols. Validating the encoding keeps a bad
/// payload from producing an invalid text frame.
using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                     rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

/// How both protocols parse client JSON: strict UTF-8, and iterative so a
/// deeply nested payload costs no stack.
inline constexpr unsigned kJsonParseFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;

/// Writes `text` as a string value; false when it is not valid UTF-8.
inline bool write_string(JsonWriter& w, std::string_view text) {
  return w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

/// A JSON string holding `text`, quoted and escaped.
inline std::string json_string(std::string_view text) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  write_string(w, text);
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace nudge::plugins::websocket
