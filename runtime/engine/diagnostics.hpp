#pragma once

#include <string>
#include <vector>

namespace nudge::runtime {

/// One problem found in a pipeline, compiler-style:
/// `pipelines/chat.toml:14:14: sink.postgres.batch_size: must be in [1, 10000], got 0`.
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string key_path;  ///< e.g. `sink.sqlite.path`; empty for file-level problems
  std::string message;

  std::string to_string() const;
};

/// Collects every problem, so a user sees them all at once rather than one per run.
class Diagnostics {
 public:
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  bool empty() const noexcept { return items_.empty(); }
  const std::vector<Diagnostic>& items() const noexcept { return items_; }
  /// All diagnostics, one per line.
  std::string to_string() const;

 private:
  std::vector<Diagnostic> items_;
};

/// The closest candidate to `word` by edit distance, or "" when none is close
/// enough to be a plausible typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

/// "unknown key 'chanel' (did you mean 'channel'?)", or the known keys when
/// none is close, or that the table takes none.
std::string unknown_key_message(const std::string& name, const std::vector<std::string>& known);

}  // namespace nudge::runtime
