#include "engine/history_merge.hpp"

#include <algorithm>

namespace nudge::runtime {

std::optional<std::vector<MessagePtr>> answer_from_window(const HistoryQuery& query,
                                                          const std::vector<MessagePtr>& window) {
  std::vector<MessagePtr> out;
  if (query.after) {
    const auto it =
        std::find_if(window.begin(), window.end(), [&](const MessagePtr& m) { return m->id == *query.after; });
    if (it == window.end()) return std::nullopt;
    for (auto next = it + 1; next != window.end() && out.size() < query.limit; ++next) out.push_back(*next);
    return out;
  }
  if (window.size() < query.limit) return std::nullopt;
  out.assign(window.end() - static_cast<std::ptrdiff_t>(query.limit), window.end());
  return out;
}

std::vector<MessagePtr> merge_history(const HistoryQuery& query, std::vector<MessagePtr> stored,
                                      const std::vector<MessagePtr>& window) {
  std::vector<MessagePtr> all = std::move(stored);
  all.insert(all.end(), window.begin(), window.end());
  if (query.after) std::erase_if(all, [&](const MessagePtr& m) { return m->id <= *query.after; });
  std::stable_sort(all.begin(), all.end(), [](const MessagePtr& a, const MessagePtr& b) { return a->id < b->id; });
  all.erase(
      std::unique(all.begin(), all.end(), [](const MessagePtr& a, const MessagePtr& b) { return a->id == b->id; }),
      all.end());
  if (all.size() > query.limit) {
    if (query.after) all.resize(query.limit);
    else all.erase(all.begin(), all.end() - static_cast<std::ptrdiff_t>(query.limit));
  }
  return all;
}

}  // namespace nudge::runtime
