#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace nudge::runtime::tap {

enum class Format { json, text };

/// Turns the body of GET /tap, as it arrives in pieces, into output: each
/// event on `out` (as received, or one line for people), each notice (what
/// was missed, the end) on `err`.
class Printer {
 public:
  Printer(Format format, std::ostream& out, std::ostream& err) : format_(format), out_(out), err_(err) {}

  /// Consumes a piece of the stream; lines may be split across pieces.
  void feed(std::string_view data);

  std::uint64_t events() const noexcept { return events_; }
  /// Events missed so far, as the endpoint last said.
  std::uint64_t missed() const noexcept { return missed_; }
  /// The endpoint ended the stream itself (the limit was reached).
  bool ended() const noexcept { return ended_; }

 private:
  void line(std::string_view text);

  Format format_;
  std::ostream& out_;
  std::ostream& err_;
  std::string partial_;
  std::uint64_t events_ = 0;
  std::uint64_t missed_ = 0;
  bool ended_ = false;
};

/// One event line (JSON) as text for people:
/// `14:40:49.123 transform.rejected  #r1 alice: spam spam (too long)`.
/// The line itself when it is not an event.
std::string text_line(std::string_view json);

}  // namespace nudge::runtime::tap
