#pragma once

#include <optional>
#include <vector>

#include "nudge/sdk/history.hpp"

namespace nudge::runtime {

/// What the fanout's recent window alone answers for `query`, when it can:
/// with `after`, the messages behind that id if the window still holds it;
/// without, the window's last `limit` when it holds at least that many.
/// nullopt when the window does not reach back far enough (ask the sink).
std::optional<std::vector<MessagePtr>> answer_from_window(const HistoryQuery& query,
                                                          const std::vector<MessagePtr>& window);

/// The sink's answer to `query` merged with the window's messages: ordered
/// by id, each id once, after `query.after` when set, and cut to `limit` —
/// the first `limit` with `after` (catching up), else the last `limit`. The
/// window covers what the sink has not written yet.
std::vector<MessagePtr> merge_history(const HistoryQuery& query, std::vector<MessagePtr> stored,
                                      const std::vector<MessagePtr>& window);

}  // namespace nudge::runtime
