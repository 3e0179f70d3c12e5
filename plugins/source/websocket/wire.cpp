#include "wire.hpp"

#include <algorithm>
#include <cstring>

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace nudge::plugins::websocket {

namespace {

constexpr std::string_view kHandshakeGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool is_control(Opcode opcode) noexcept { return static_cast<std::uint8_t>(opcode) >= 8; }

bool known_opcode(std::uint8_t opcode) noexcept { return opcode <= 2 || (opcode >= 8 && opcode <= 10); }

/// Codes a peer may send in a close frame (RFC 6455 section 7.4).
bool valid_close_code(std::uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

void unmask(std::uint8_t* data, std::size_t size, const std::array<std::uint8_t, 4>& mask,
            std::uint64_t offset) noexcept {
  std::size_t i = 0;
  // Eight bytes at a time with the key rotated to this offset.
  std::uint8_t rotated[8];
  for (std::size_t k = 0; k < 8; ++k) rotated[k] = mask[(offset + k) & 3];
  std::uint64_t key;
  std::memcpy(&key, rotated, 8);
  for (; i + 8 <= size; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= key;
    std::memcpy(data + i, &word, 8);
  }
  for (; i < size; ++i) data[i] ^= mask[(offset + i) & 3];
}

}  // namespace

std::string websocket_accept_key(std::string_view key) {
  std::string input(key);
  input += kHandshakeGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int size = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(size));
}

bool valid_websocket_key(std::string_view key) noexcept {
  // 16 bytes in base64: 22 characters and "==".
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  });
}

std::string encode_frame(Opcode opcode, std::string_view payload) {
  std::string frame;
  const std::size_t size = payload.size();
  frame.reserve(size + 10);
  frame.push_back(static_cast<char>(0x80 | static_cast<std::uint8_t>(opcode)));
  if (size < 126) {
    frame.push_back(static_cast<char>(size));
  } else if (size <= 0xFFFF) {
    frame.push_back(static_cast<char>(126));
    frame.push_back(static_cast<char>(size >> 8));
    frame.push_back(static_cast<char>(size & 0xFF));
  } else {
    frame.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) frame.push_back(static_cast<char>((size >> shift) & 0xFF));
  }
  frame.append(payload);
  return frame;
}

std::string encode_close_frame(CloseCode code, std::string_view reason) {
  std::string payload;
  const auto value = static_cast<std::uint16_t>(code);
  payload.push_back(static_cast<char>(value >> 8));
  payload.push_back(static_cast<char>(value & 0xFF));
  // Cut on a character boundary: a close reason must be UTF-8 too.
  std::size_t keep = std::min<std::size_t>(reason.size(), 123);
  while (keep > 0 && keep < reason.size() && (static_cast<std::uint8_t>(reason[keep]) & 0xC0) == 0x80) --keep;
  payload.append(reason.substr(0, keep));
  return encode_frame(Opcode::close, payload);
}

bool Utf8Validator::feed(const std::uint8_t* bytes, std::size_t size) noexcept {
  std::size_t i = 0;
  while (i < size) {
    if (need_ == 0) {
      // ASCII runs, the common case, eight bytes at a time.
      while (i + 8 <= size) {
        std::uint64_t word;
        std::memcpy(&word, bytes + i, 8);
        if (word & 0x8080808080808080ULL) break;
        i += 8;
      }
      if (i == size) break;
      const std::uint8_t c = bytes[i++];
      if (c < 0x80) continue;
      low_ = 0x80;
      high_ = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) {
        need_ = 1;
      } else if (c == 0xE0) {
        need_ = 2, low_ = 0xA0;  // no overlong forms
      } else if (c == 0xED) {
        need_ = 2, high_ = 0x9F;  // no surrogates
      } else if (c >= 0xE1 && c <= 0xEF) {
        need_ = 2;
      } else if (c == 0xF0) {
        need_ = 3, low_ = 0x90;
      } else if (c >= 0xF1 && c <= 0xF3) {
        need_ = 3;
      } else if (c == 0xF4) {
        need_ = 3, high_ = 0x8F;  // nothing past U+10FFFF
      } else {
        need_ = 0xFF;  // stays invalid
        return false;
      }
    } else {
      if (need_ == 0xFF) return false;
      const std::uint8_t c = bytes[i++];
      if (c < low_ || c > high_) {
        need_ = 0xFF;
        return false;
      }
      low_ = 0x80;
      high_ = 0xBF;
      --need_;
    }
  }
  return need_ != 0xFF;
}

FrameReader::Event FrameReader::fail(CloseCode code, const char* reason) noexcept {
  failed_ = true;
  failure_code_ = code;
  failure_reason_ = reason;
  return Event::failure;
}

FrameReader::Event FrameReader::start_frame() noexcept {
  const std::uint8_t b0 = header_[0];
  const std::uint8_t b1 = header_[1];
  fin_ = (b0 & 0x80) != 0;
  opcode_ = static_cast<Opcode>(b0 & 0x0F);
  std::uint64_t length = b1 & 0x7F;
  std::size_t at = 2;
  if (length == 126) {
    length = (std::uint64_t{header_[2]} << 8) | header_[3];
    if (length < 126) return fail(CloseCode::protocol_error, "length not minimally encoded");
    at = 4;
  } else if (length == 127) {
    length = 0;
    for (std::size_t k = 0; k < 8; ++k) length = (length << 8) | header_[2 + k];
    if (length >> 63) return fail(CloseCode::protocol_error, "length out of range");
    if (length <= 0xFFFF) return fail(CloseCode::protocol_error, "length not minimally encoded");
    at = 10;
  }
  std::copy_n(header_.begin() + static_cast<std::ptrdiff_t>(at), 4, mask_.begin());
  remaining_ = length;
  frame_offset_ = 0;
  if (is_control(opcode_)) {
    control_size_ = 0;
    if (!control_) control_ = std::make_unique<std::array<std::uint8_t, 125>>();
  } else {
    if (opcode_ == Opcode::continuation) {
      if (!in_message_) return fail(CloseCode::protocol_error, "continuation frame outside a message");
    } else {
      if (in_message_) return fail(CloseCode::protocol_error, "new message before the last one ended");
      in_message_ = true;
      text_ = opcode_ == Opcode::text;
      message_size_ = 0;
      assembled_.clear();
      utf8_.reset();
    }
    if (message_size_ > max_message_bytes_ || length > max_message_bytes_ - message_size_)
      return fail(CloseCode::too_big, "message too big");
    message_size_ += static_cast<std::size_t>(length);
  }
  in_frame_ = true;
  return Event::need_more;
}

FrameReader::Event FrameReader::end_frame() {
  in_frame_ = false;
  header_size_ = 0;
  switch (opcode_) {
    case Opcode::ping:
      view_ = {reinterpret_cast<const char*>(control_->data()), control_size_};
      return Event::ping;
    case Opcode::pong:
      view_ = {reinterpret_cast<const char*>(control_->data()), control_size_};
      return Event::pong;
    case Opcode::close: {
      if (control_size_ == 1) return fail(CloseCode::protocol_error, "close frame with a 1-byte payload");
      close_code_ = 1005;
      view_ = {};
      if (control_size_ >= 2) {
        close_code_ = static_cast<std::uint16_t>(((*control_)[0] << 8) | (*control_)[1]);
        if (!valid_close_code(close_code_)) return fail(CloseCode::protocol_error, "invalid close code");
        Utf8Validator reason;
        if (!reason.feed(control_->data() + 2, control_size_ - 2) || !reason.complete())
          return fail(CloseCode::bad_payload, "close reason is not UTF-8");
        view_ = {reinterpret_cast<const char*>(control_->data()) + 2, control_size_ - 2};
      }
      return Event::close;
    }
    default:
      if (!fin_) return Event::need_more;
      if (text_ && !utf8_.complete()) return fail(CloseCode::bad_payload, "text is not UTF-8");
      in_message_ = false;
      if (!direct_) view_ = assembled_;
      return Event::message;
  }
}

FrameReader::Event FrameReader::next(std::span<std::uint8_t>& input) {
  if (failed_) return Event::failure;
  direct_ = false;
  view_ = {};
  // The last message's storage goes back between messages: an idle
  // connection keeps none.
  if (!in_message_ && assembled_.capacity() != 0) std::string().swap(assembled_);
  // So does the last control frame's (its payload was handed out last call).
  if (control_ && !(in_frame_ && is_control(opcode_))) control_.reset();
  while (true) {
    if (!in_frame_) {
      if (input.empty()) return Event::need_more;
      // The header: 2 bytes, then as many more as they announce.
      while (header_size_ < 2 && !input.empty()) {
        header_[header_size_++] = input.front();
        input = input.subspan(1);
      }
      if (header_size_ < 2) return Event::need_more;
      const std::uint8_t b0 = header_[0];
      const std::uint8_t b1 = header_[1];
      if (b0 & 0x70) return fail(CloseCode::protocol_error, "reserved bits set (no extension was agreed)");
      if (!known_opcode(b0 & 0x0F)) return fail(CloseCode::protocol_error, "unknown opcode");
      if (!(b1 & 0x80)) return fail(CloseCode::protocol_error, "client frames must be masked");
      if (is_control(static_cast<Opcode>(b0 & 0x0F))) {
        if (!(b0 & 0x80)) return fail(CloseCode::protocol_error, "fragmented control frame");
        if ((b1 & 0x7F) > 125) return fail(CloseCode::protocol_error, "control frame longer than 125 bytes");
      }
      const std::size_t length_bytes = (b1 & 0x7F) == 126 ? 2 : (b1 & 0x7F) == 127 ? 8 : 0;
      const std::size_t full = 2 + length_bytes + 4;
      const std::size_t take = std::min(full - header_size_, input.size());
      std::copy_n(input.begin(), take, header_.begin() + static_cast<std::ptrdiff_t>(header_size_));
      header_size_ += take;
      input = input.subspan(take);
      if (header_size_ < full) return Event::need_more;
      if (start_frame() == Event::failure) return Event::failure;
      // A whole single-frame message in the input is handed out where it lies.
      if (!is_control(opcode_) && fin_ && opcode_ != Opcode::continuation && remaining_ <= input.size()) {
        const auto size = static_cast<std::size_t>(remaining_);
        unmask(input.data(), size, mask_, 0);
        if (text_ && (!utf8_.feed(input.data(), size) || !utf8_.complete()))
          return fail(CloseCode::bad_payload, "text is not UTF-8");
        view_ = {reinterpret_cast<const char*>(input.data()), size};
        direct_ = true;
        input = input.subspan(size);
        remaining_ = 0;
        return end_frame();
      }
    }
    const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
    if (take > 0) {
      std::uint8_t* data = input.data();
      unmask(data, take, mask_, frame_offset_);
      if (is_control(opcode_)) {
        std::copy_n(data, take, control_->begin() + static_cast<std::ptrdiff_t>(control_size_));
        control_size_ += take;
      } else {
        if (text_ && !utf8_.feed(data, take)) return fail(CloseCode::bad_payload, "text is not UTF-8");
        assembled_.append(reinterpret_cast<const char*>(data), take);
      }
      frame_offset_ += take;
      remaining_ -= take;
      input = input.subspan(take);
    }
    if (remaining_ > 0) return Event::need_more;
    const Event event = end_frame();
    if (event != Event::need_more) return event;
  }
}

}  // namespace nudge::plugins::websocket
