#include "process_watch.hpp"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>

namespace nudge::bench {
namespace {

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view line, double ticks_per_second, std::int64_t page_bytes) {
  // "pid (name) state ppid ...": the name may hold ") ", so the last ')' ends it.
  const auto open = line.find('(');
  const auto close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  ProcStat s;
  const auto pid = to_int(line.substr(0, open == 0 ? 0 : open - 1));
  if (!pid) return std::nullopt;
  s.pid = static_cast<int>(*pid);
  s.name = std::string(line.substr(open + 1, close - open - 1));
  // Fields after the name, from field 3 (state): ppid is 4, utime 14, stime 15, cutime 16, cstime 17, rss 24.
  std::vector<std::string_view> f;
  std::string_view rest = line.substr(close + 1);
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const auto end = rest.find_first_of(" \n");
    f.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  if (f.size() < 22) return std::nullopt;
  const auto ppid = to_int(f[1]), ut = to_int(f[11]), st = to_int(f[12]), cut = to_int(f[13]), cst = to_int(f[14]),
             rss = to_int(f[21]);
  if (!ppid || !ut || !st || !cut || !cst || !rss) return std::nullopt;
  s.ppid = static_cast<int>(*ppid);
  s.user = static_cast<double>(*ut) / ticks_per_second;
  s.system = static_cast<double>(*st) / ticks_per_second;
  s.children_user = static_cast<double>(*cut) / ticks_per_second;
  s.children_system = static_cast<double>(*cst) / ticks_per_second;
  s.rss_bytes = *rss * page_bytes;
  return s;
}

std::optional<ProcStat> read_proc_stat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return parse_proc_stat(line, static_cast<double>(::sysconf(_SC_CLK_TCK)), ::sysconf(_SC_PAGESIZE));
}

std::optional<int> thread_group_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Tgid:")) {
      std::string_view v(line);
      v.remove_prefix(5);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      if (auto t = to_int(v)) return static_cast<int>(*t);
      return std::nullopt;
    }
  }
  return std::nullopt;
}

ProcessWatch::Snapshot ProcessWatch::snapshot() {
  // Listing /proc gives processes only, never thread ids.
  Snapshot s;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    const auto pid = to_int(name);
    if (!pid) continue;
    if (auto st = read_proc_stat(static_cast<int>(*pid))) s.emplace(st->pid, std::move(*st));
  }
  return s;
}

ProcessWatch::ProcessWatch(std::vector<int> pids) {
  std::map<int, int> first_given;  // process → the first pid given for it
  for (int given : pids) {
    Root r;
    r.given = given;
    r.pid = thread_group_of(given).value_or(given);
    if (r.pid != given) {
      r.note = "pid " + std::to_string(given) + " is a thread of process " + std::to_string(r.pid) +
               ": its process is watched";
    }
    if (auto [it, fresh] = first_given.emplace(r.pid, given); !fresh) {
      r.duplicate = true;
      r.note += (r.note.empty() ? "" : "; ") + std::string("the same process as pid ") + std::to_string(it->second) +
                ", counted there";
    }
    roots_.push_back(std::move(r));
  }
}

std::map<int, ProcStat> ProcessWatch::tree_of(const Root& root, const Snapshot& s) const {
  std::map<int, ProcStat> out;
  if (root.duplicate) return out;
  std::multimap<int, int> children;
  for (const auto& [pid, st] : s) children.emplace(st.ppid, pid);
  std::set<int> other_roots;
  for (const auto& r : roots_) {
    if (!r.duplicate && r.pid != root.pid) other_roots.insert(r.pid);
  }
  std::vector<int> todo{root.pid};
  while (!todo.empty()) {
    const int p = todo.back();
    todo.pop_back();
    auto it = s.find(p);
    if (it == s.end()) continue;
    out.emplace(p, it->second);
    auto [b, e] = children.equal_range(p);
    for (auto c = b; c != e; ++c) {
      // A watched descendant is reported under its own pid, not twice.
      if (!other_roots.contains(c->second)) todo.push_back(c->second);
    }
  }
  return out;
}

void ProcessWatch::start() { start(snapshot()); }
std::vector<ProcessUsage> ProcessWatch::stop() { return stop(snapshot()); }

void ProcessWatch::start(const Snapshot& now) {
  for (auto& r : roots_) r.at_start = tree_of(r, now);
}

std::vector<ProcessUsage> ProcessWatch::stop(const Snapshot& now) {
  std::vector<ProcessUsage> out;
  for (const auto& r : roots_) {
    ProcessUsage u;
    u.pid = r.given;
    u.note = r.note;
    if (auto it = now.find(r.pid); it != now.end()) {
      u.name = it->second.name;
    } else if (auto at = r.at_start.find(r.pid); at != r.at_start.end()) {
      u.name = at->second.name;
    } else {
      u.name = "?";
    }
    if (!r.duplicate) {
      const auto end = tree_of(r, now);
      // Differences of sums: a process that ended in the window moved its
      // whole time into its parent's reaped-children times, and its time at
      // the start is subtracted, so only its time in the window remains; one
      // born in the window starts from zero.
      double total_start = 0, system_start = 0, total_end = 0, system_end = 0;
      for (const auto& [pid, st] : r.at_start) {
        total_start += st.total();
        system_start += st.total_system();
      }
      for (const auto& [pid, st] : end) {
        total_end += st.total();
        system_end += st.total_system();
        u.rss_bytes += st.rss_bytes;
      }
      u.cpu_seconds = std::max(0.0, total_end - total_start);
      u.system_cpu_seconds = std::max(0.0, system_end - system_start);
      u.processes_at_start = static_cast<std::uint32_t>(r.at_start.size());
      u.processes_at_end = static_cast<std::uint32_t>(end.size());
    }
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace nudge::bench
