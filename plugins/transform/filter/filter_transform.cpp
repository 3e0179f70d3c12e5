#include "filter_transform.hpp"

#include <cctype>
#include <exception>
#include <utility>
#include <vector>

namespace nudge::plugins::filter {

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// Word characters: ASCII letters and digits, and every byte of a multi-byte
/// UTF-8 character (so "café" is one word).
bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || u >= 0x80 || c == '\'';
}

/// Characters, not bytes: UTF-8 continuation bytes do not count.
std::int64_t characters(std::string_view text) {
  std::int64_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

/// Calls `each(begin, length)` for every word of `text`.
template <class Each>
void for_each_word(std::string_view text, Each each) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !is_word_byte(text[i])) ++i;
    const std::size_t begin = i;
    while (i < text.size() && is_word_byte(text[i])) ++i;
    if (i > begin && !each(begin, i - begin)) return;
  }
}

std::string action_check(const ConfigValue& v, std::initializer_list<const char*> allowed) {
  const auto& text = std::get<std::string>(v);
  for (const char* a : allowed)
    if (text == a) return {};
  std::string expected = "must be one of";
  for (const char* a : allowed) expected += std::string(" \"") + a + "\"";
  return expected;
}

}  // namespace

FilterTransform::Rules::Rules(const Config& config)
    : blocked_senders_action(config.get_string("blocked_senders_action")),
      max_length(config.get_int("max_length")),
      blocked_words_action(config.get_string("blocked_words_action")) {
  for (const auto& s : config.get_strings("blocked_senders")) blocked_senders.insert(s);
  for (const auto& r : config.get_strings("rooms")) rooms.insert(r);
  for (const auto& w : config.get_strings("blocked_words")) blocked_words.insert(lower(w));
}

FilterTransform::FilterTransform(const Config& config, Context& context)
    : rules_(config),
      passed_(context.metrics().counter("passed", "Messages passed on (masked ones included)")),
      dropped_(context.metrics().counter("dropped", "Messages dropped quietly")),
      rejected_(context.metrics().counter("rejected", "Messages refused with a reason to the sender")),
      masked_(context.metrics().counter("masked", "Messages passed on with blocked words masked")) {}

Status FilterTransform::reconfigure(const Config& config) {
  // Built whole before it replaces the old rules: a config that cannot be
  // read leaves the old rules in force.
  try {
    Rules rules(config);
    rules_ = std::move(rules);
  } catch (const std::exception& e) {
    return Status::error(StatusCode::invalid_argument, std::string("the new filter rules cannot apply: ") + e.what());
  }
  return Status::success();
}

ConfigSchema FilterTransform::schema() {
  ConfigSchema s;
  s.string_list("blocked_senders", {}, "Senders whose messages are not let through")
      .with_example("[\"spammer\"]")
      .reloadable();
  s.string("blocked_senders_action", "drop",
           "What happens to a blocked sender's message: \"drop\" (acknowledged, never delivered or stored) or "
           "\"reject\" (the sender is told)")
      .with_check([](const ConfigValue& v) {
        return action_check(v, {"drop", "reject"});
      })
      .reloadable();
  s.string_list("rooms", {}, "Rooms messages may be sent to; empty allows every room")
      .with_example("[\"general\", \"support\"]")
      .reloadable();
  s.integer("max_length", 0, "Longest text in characters; longer messages are rejected. 0: no limit")
      .range(0, 16 * 1024 * 1024)
      .reloadable();
  s.string_list("blocked_words", {}, "Words (whole words, any case) a message may not contain")
      .with_example("[\"spam\", \"scam\"]")
      .reloadable();
  s.string("blocked_words_action", "reject",
           "What happens to a message with a blocked word: \"reject\" (the sender is told which word), \"drop\", "
           "or \"mask\" (the word becomes asterisks and the message goes on)")
      .with_check([](const ConfigValue& v) {
        return action_check(v, {"reject", "drop", "mask"});
      })
      .reloadable();
  return s;
}

std::string FilterTransform::blocked_word_in(std::string_view text) const {
  std::string found;
  for_each_word(text, [&](std::size_t begin, std::size_t length) {
    std::string word = lower(text.substr(begin, length));
    if (!rules_.blocked_words.contains(word)) return true;
    found = std::move(word);
    return false;
  });
  return found;
}

std::string FilterTransform::masked(std::string_view text) const {
  // Spans first, replaced right to left: a masked multi-byte word gets one
  // asterisk per character, so the text may shrink behind it.
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  for_each_word(text, [&](std::size_t begin, std::size_t length) {
    if (rules_.blocked_words.contains(lower(text.substr(begin, length)))) spans.emplace_back(begin, length);
    return true;
  });
  std::string out(text);
  for (auto it = spans.rbegin(); it != spans.rend(); ++it)
    out.replace(it->first, it->second,
                std::string(static_cast<std::size_t>(characters(text.substr(it->first, it->second))), '*'));
  return out;
}

void FilterTransform::process(MessagePtr message, VerdictHandler done) {
  auto refuse = [&](const std::string& action, std::string reason) {
    if (action == "drop") {
      dropped_.add();
      return done(Verdict::drop());
    }
    rejected_.add();
    done(Verdict::reject(std::move(reason)));
  };
  if (rules_.blocked_senders.contains(message->sender))
    return refuse(rules_.blocked_senders_action, "messages from '" + message->sender + "' are not accepted here");
  if (!rules_.rooms.empty() && !rules_.rooms.contains(message->room))
    return refuse("reject", "room '" + message->room + "' does not take messages here");
  if (rules_.max_length > 0 && characters(message->payload) > rules_.max_length)
    return refuse("reject", "messages are limited to " + std::to_string(rules_.max_length) + " characters");
  if (!rules_.blocked_words.empty()) {
    if (const auto word = blocked_word_in(message->payload); !word.empty()) {
      if (rules_.blocked_words_action != "mask")
        return refuse(rules_.blocked_words_action, "the word '" + word + "' is not allowed");
      // Messages are shared and immutable: the change goes into a copy.
      auto changed = std::make_shared<Message>();
      changed->id = message->id;
      changed->room = message->room;
      changed->sender = message->sender;
      changed->payload = masked(message->payload);
      changed->headers = message->headers;
      changed->timestamp_ms = message->timestamp_ms;
      changed->origin = message->origin;
      masked_.add();
      passed_.add();
      return done(Verdict::pass(std::move(changed)));
    }
  }
  passed_.add();
  done(Verdict::pass(std::move(message)));
}

}  // namespace nudge::plugins::filter
