#pragma once

#include <string>
#include <string_view>

namespace nudge {

// UTF-8 checks for text a plugin stores or sends where only valid UTF-8 is
// accepted (a database's text column, a JSON string). Plain functions: they
// keep no state and may be called from any thread.
//
// Valid means well-formed UTF-8 as Unicode defines it (RFC 3629): no overlong
// forms, no UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no
// truncated sequence. NUL (U+0000) is valid UTF-8; a plugin whose store
// cannot hold it deals with it itself.

/// True if `text` is valid UTF-8 as a whole.
bool is_valid_utf8(std::string_view text) noexcept;

/// Copies `text` to `out` (replacing what `out` held), with U+FFFD in place
/// of every byte sequence that is not valid UTF-8: one replacement for a lead
/// byte and the continuation bytes that fit it (a truncated sequence), one for
/// every other bad byte. Valid sequences are copied as they are. Returns true
/// if anything was replaced (then `text` was not valid UTF-8).
bool repair_utf8(std::string_view text, std::string& out);

/// True if `name` may name a sender shown to people: 1 to 64 bytes of valid
/// UTF-8, no space of any kind at either end nor a combining mark first, and
/// no control (C0, DEL, C1), line or paragraph separator, bidirectional
/// control or other default-ignorable code point (zero-width characters,
/// BOM, fillers, variation selectors, tags). Those reorder what is displayed
/// ("\u202Eadmin") or display as nothing, so two names that look alike would
/// be different senders. Letters of other scripts that look alike and
/// unnormalised forms are not detected. The one rule for every source.
bool is_acceptable_display_name(std::string_view name) noexcept;

/// `message` on one line, for a log line or a status: every run of spaces,
/// tabs, CRs and LFs becomes one space, none at either end. For the
/// multi-line messages of client libraries ("could not connect...\n\tIs the
/// server running..."). Other bytes are copied as they are.
std::string one_line(std::string_view message);

}  // namespace nudge
