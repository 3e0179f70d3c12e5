#pragma once

#include <string>
#include <unordered_set>

#include "nudge/sdk.hpp"

namespace nudge::plugins::filter {

/// Rules over a message's sender, room and text, from the pipeline file.
/// Checked in this order, the first that applies decides:
///   blocked_senders  → blocked_senders_action (drop by default)
///   rooms            → reject when the room is not listed (an empty list allows all)
///   max_length       → reject when the text has more characters
///   blocked_words    → blocked_words_action: reject, drop, or mask (the word
///                      becomes asterisks and the changed message goes on)
class FilterTransform final : public Transform {
 public:
  FilterTransform(const Config& config, Context& context);
  static ConfigSchema schema();

  // Transform
  void process(MessagePtr message, VerdictHandler done) override;
  void stop(std::function<void()> done) override { done(); }

  // Plugin
  /// Every rule key is live: the new rules decide every message from now on.
  Status reconfigure(const Config& config) override;

 private:
  /// The rules of one configuration, replaced whole by reconfigure().
  struct Rules {
    explicit Rules(const Config& config);
    std::unordered_set<std::string> blocked_senders;
    std::string blocked_senders_action;
    std::unordered_set<std::string> rooms;
    std::int64_t max_length = 0;
    std::unordered_set<std::string> blocked_words;
    std::string blocked_words_action;
  };

  /// The first blocked word in `text` (whole words, ASCII case-insensitive), or "".
  std::string blocked_word_in(std::string_view text) const;
  /// `text` with every blocked word replaced by as many asterisks.
  std::string masked(std::string_view text) const;

  Rules rules_;
  Counter& passed_;
  Counter& dropped_;
  Counter& rejected_;
  Counter& masked_;
};

}  // namespace nudge::plugins::filter
