// --watch-pid: CPU of a process and its descendants over a window.
#include <gtest/gtest.h>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <thread>
#include <utility>

#include "process_watch.hpp"

namespace nudge::bench {
namespace {

/// Burns `d` of this thread's CPU time (not wall time: the machine may be busy).
void burn_cpu(std::chrono::milliseconds d) {
  auto cpu_ns = [] {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1'000'000'000LL + t.tv_nsec;
  };
  const auto end = cpu_ns() + std::chrono::nanoseconds(d).count();
  volatile std::uint64_t x = 0;
  while (cpu_ns() < end) x = x + 1;
}

/// A child that burns `busy` of CPU, says so on the returned pipe, then sleeps until killed.
std::pair<pid_t, int> child_burning(std::chrono::milliseconds busy) {
  int fds[2];
  if (::pipe(fds) != 0) return {-1, -1};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    burn_cpu(busy);
    const char done = 1;
    (void)!::write(fds[1], &done, 1);
    for (;;) ::pause();
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

void wait_done(int fd) {
  char c;
  (void)!::read(fd, &c, 1);
  ::close(fd);
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

constexpr int K = 4'190'000;  // fake pids, above any this machine hands out

ProcStat stat(int pid, int ppid, double user, double system, double cuser = 0, double csystem = 0) {
  ProcStat s;
  s.pid = pid;
  s.ppid = ppid;
  s.name = "p" + std::to_string(pid);
  s.user = user;
  s.system = system;
  s.children_user = cuser;
  s.children_system = csystem;
  s.rss_bytes = 4096;
  return s;
}

TEST(ProcStatLine, NameWithSpacesAndParenthesesAndChildrenTimes) {
  // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss
  const auto s =
      parse_proc_stat("42 (a) b (c) S 7 42 42 0 -1 0 0 0 0 0 150 50 30 20 20 0 4 0 1 1000 25 rest", 100, 4096);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->pid, 42);
  EXPECT_EQ(s->ppid, 7);
  EXPECT_EQ(s->name, "a) b (c");
  EXPECT_DOUBLE_EQ(s->user, 1.5);
  EXPECT_DOUBLE_EQ(s->system, 0.5);
  EXPECT_DOUBLE_EQ(s->total(), 2.5);
  EXPECT_DOUBLE_EQ(s->total_system(), 0.7);
  EXPECT_EQ(s->rss_bytes, 25 * 4096);
  EXPECT_FALSE(parse_proc_stat("42 (short) S 1 2 3", 100, 4096));
}

// The reported bug: two processes, one busy and one idle, must not read alike.
TEST(ProcessWatch, TwoDifferentProcessesReportTheirOwnCpu) {
  const auto [busy, busy_done] = child_burning(std::chrono::milliseconds(600));
  const auto [idle, idle_done] = child_burning(std::chrono::milliseconds(0));
  ProcessWatch w({busy, idle});
  w.start();
  wait_done(busy_done);
  wait_done(idle_done);
  const auto u = w.stop();
  kill_and_reap(busy);
  kill_and_reap(idle);
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].pid, busy);
  EXPECT_EQ(u[1].pid, idle);
  // Ticks are 10 ms; the busy child may have burnt some before start().
  EXPECT_GT(u[0].cpu_seconds, 0.3);
  EXPECT_LT(u[1].cpu_seconds, 0.05);
  EXPECT_TRUE(u[0].note.empty());
}

TEST(ProcessWatch, AThreadIdIsItsProcessAndAPidGivenTwiceCountsOnce) {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  });
  while (tid == 0) std::this_thread::yield();
  ProcessWatch w({::getpid(), tid.load()});
  w.start();
  burn_cpu(std::chrono::milliseconds(200));
  const auto u = w.stop();
  done = true;
  t.join();
  ASSERT_EQ(u.size(), 2u);
  EXPECT_GT(u[0].cpu_seconds, 0.15);
  // The thread's /proc/<tid>/stat shows the whole process: counting it too doubled the figure.
  EXPECT_EQ(u[1].cpu_seconds, 0);
  EXPECT_NE(u[1].note.find("thread of process " + std::to_string(::getpid())), std::string::npos) << u[1].note;
}

TEST(ProcessWatch, ChildrenForkedAndReapedInTheWindowCount) {
  ProcessWatch w({::getpid()});
  w.start();
  const pid_t child = ::fork();
  if (child == 0) {
    burn_cpu(std::chrono::milliseconds(300));
    ::_exit(0);
  }
  ::waitpid(child, nullptr, 0);  // its time is now in our reaped-children times
  const auto u = w.stop();
  ASSERT_EQ(u.size(), 1u);
  EXPECT_GT(u[0].cpu_seconds, 0.25);
}

TEST(ProcessWatch, TheTreeIsReadAgainAtTheEnd) {
  // Pids no process has (the constructor asks /proc which process each is).
  // 1 is the root; 2 lives throughout; 3 ends in the window (reaped by 1); 4 is born in it.
  ProcessWatch w({K + 1});
  w.start({{K + 1, stat(K + 1, 0, 1, 1)},
           {K + 2, stat(K + 2, K + 1, 5, 0)},
           {K + 3, stat(K + 3, K + 1, 10, 0)},
           {K + 9, stat(K + 9, 0, 100, 0)}});
  // 3 spent 2 s more, then ended: 1's reaped-children times hold its 12 s.
  const auto u = w.stop({{K + 1, stat(K + 1, 0, 1.5, 1, 12, 0)},
                         {K + 2, stat(K + 2, K + 1, 6, 0)},
                         {K + 4, stat(K + 4, K + 2, 0.25, 0.25)},
                         {K + 9, stat(K + 9, 0, 200, 0)}});
  ASSERT_EQ(u.size(), 1u);
  // 1: 0.5, 2: 1, 3: 2, 4: 0.5; pid 9 is not in the tree.
  EXPECT_DOUBLE_EQ(u[0].cpu_seconds, 4.0);
  EXPECT_DOUBLE_EQ(u[0].system_cpu_seconds, 0.25);
  EXPECT_EQ(u[0].processes_at_start, 3u);
  EXPECT_EQ(u[0].processes_at_end, 3u);
}

TEST(ProcessWatch, AWatchedDescendantIsReportedUnderItsOwnPidOnly) {
  ProcessWatch w({K + 1, K + 2});
  w.start({{K + 1, stat(K + 1, 0, 0, 0)}, {K + 2, stat(K + 2, K + 1, 0, 0)}, {K + 3, stat(K + 3, K + 2, 0, 0)}});
  const auto u =
      w.stop({{K + 1, stat(K + 1, 0, 1, 0)}, {K + 2, stat(K + 2, K + 1, 2, 0)}, {K + 3, stat(K + 3, K + 2, 4, 0)}});
  ASSERT_EQ(u.size(), 2u);
  EXPECT_DOUBLE_EQ(u[0].cpu_seconds, 1);
  EXPECT_DOUBLE_EQ(u[1].cpu_seconds, 6);
}

}  // namespace
}  // namespace nudge::bench
