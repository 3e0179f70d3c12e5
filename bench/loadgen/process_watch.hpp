#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.hpp"

namespace nudge::bench {

/// One line of /proc/<pid>/stat, in seconds and bytes.
struct ProcStat {
  int pid = 0;
  int ppid = 0;
  std::string name;
  double user = 0, system = 0;                    ///< the process's own (utime, stime)
  double children_user = 0, children_system = 0;  ///< of its children it reaped (cutime, cstime)
  std::int64_t rss_bytes = 0;

  /// Own time and that of every child that ended and was reaped: what the
  /// process and its vanished descendants spent.
  double total() const { return user + system + children_user + children_system; }
  double total_system() const { return system + children_system; }
};

/// Parses a /proc/<pid>/stat line (the name may hold spaces and parentheses).
std::optional<ProcStat> parse_proc_stat(std::string_view line, double ticks_per_second, std::int64_t page_bytes);
std::optional<ProcStat> read_proc_stat(int pid);
/// The thread group (process) `pid` belongs to: itself for a process, its
/// process for a thread id. /proc/<thread id>/stat shows the whole process's
/// times, so two thread ids of one process read the same CPU seconds.
std::optional<int> thread_group_of(int pid);

/// CPU time of watched processes and all their descendants over a window.
///
/// The trees are read at start() and read again at stop(), so a process born
/// in the window (a PostgreSQL backend forked for a new connection) counts;
/// one that ended in the window counts through its parent's reaped-children
/// times. A process belongs to its nearest watched ancestor only, and a pid
/// given twice (or a thread of a watched process) is reported once.
class ProcessWatch {
 public:
  explicit ProcessWatch(std::vector<int> pids);

  void start();
  std::vector<ProcessUsage> stop();

  /// For tests: the same, from given snapshots of /proc (pid → stat).
  using Snapshot = std::map<int, ProcStat>;
  void start(const Snapshot& now);
  std::vector<ProcessUsage> stop(const Snapshot& now);
  static Snapshot snapshot();

 private:
  struct Root {
    int given = 0;  ///< as on the command line
    int pid = 0;    ///< its process (thread group)
    std::string note;
    bool duplicate = false;
    std::map<int, ProcStat> at_start;  ///< the tree's processes at start
  };
  std::map<int, ProcStat> tree_of(const Root& root, const Snapshot& s) const;

  std::vector<Root> roots_;
};

}  // namespace nudge::bench
