// `nudge deploy up|down|status`: a deployment's instances as supervised
// processes behind nginx, on this machine. The supervisor is `nudge deploy
// __supervise FILE`, started as a daemon by `up`; it holds an flock on
// STATE/supervisor.pid for its whole life, which is how the other commands
// know it runs, and writes STATE/state.toml on every change.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <toml++/toml.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "cli/deploy/deploy.hpp"

#include "cli/admin_client.hpp"
#include "engine/logging.hpp"

extern char** environ;

namespace nudge::runtime {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string one_decimal(double v) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << v;
  return out.str();
}

std::string format_uptime(double seconds) {
  if (seconds < 0) seconds = 0;
  auto s = static_cast<long long>(seconds);
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
  return buf;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "ended with wait status " + std::to_string(status);
}

/// The last `lines` lines of a file (at most 64 KiB read).
std::string tail_file(const fs::path& path, std::size_t lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "(no log at " + path.string() + ")\n";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  const std::streamoff from = std::max<std::streamoff>(0, size - 65536);
  in.seekg(from);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::deque<std::string> kept;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    kept.push_back(line);
    if (kept.size() > lines) kept.pop_front();
  }
  std::string out;
  for (const auto& l : kept) out += "    " + l + "\n";
  return out.empty() ? "    (empty)\n" : out;
}

// ------------------------------------------------------------------ network

/// Whether a TCP connection to `to` opens within `timeout`; why not in `error`.
bool reachable(const HostPort& to, std::chrono::milliseconds timeout, std::string& error) {
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto found = resolver.resolve(to.host, std::to_string(to.port), tcp::resolver::numeric_service, ec);
  if (ec) {
    error = "cannot resolve '" + to.host + "': " + ec.message();
    return false;
  }
  tcp::socket connection(io);
  bool done = false;
  asio::async_connect(connection, found, [&](const boost::system::error_code& result, const tcp::endpoint&) {
    done = true;
    ec = result;
  });
  io.run_for(timeout);
  if (!done) error = "timed out connecting";
  else if (ec) error = ec.message();
  return done && !ec;
}

/// "ready", or why not: the /readyz answer in one line.
std::string readiness(const HostPort& admin, bool& ready) {
  std::string url_error;
  const auto url = parse_admin_url("http://" + admin.to_string(), url_error);
  const auto answer = url ? admin_request("GET", *url, "/readyz", 1500ms) : AdminResponse{0, {}, {}, url_error};
  ready = answer.answered() && answer.status == 200;
  if (ready) return "ready";
  if (!answer.answered()) return "no answer (" + answer.error + ")";
  // 503 "not ready\n<stage>: <reason>\n..." → "not ready: <stage>: <reason>; ..."
  std::istringstream lines(answer.body);
  std::string out;
  std::string line;
  std::getline(lines, line);
  out = line.empty() ? "HTTP " + std::to_string(answer.status) : line;
  std::string sep = ": ";
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    out += sep + line;
    sep = "; ";
  }
  return out;
}

/// Whether something listens on (or holds) `at`: a bind there fails.
bool port_in_use(const HostPort& at) {
  asio::io_context io;
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto found =
      resolver.resolve(at.host, std::to_string(at.port), tcp::resolver::numeric_service | tcp::resolver::passive, ec);
  if (ec || found.empty()) return false;
  const tcp::endpoint endpoint = *found.begin();
  tcp::acceptor acceptor(io);
  if (acceptor.open(endpoint.protocol(), ec); ec) return false;
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor.bind(endpoint, ec);
  return ec == asio::error::address_in_use;
}

// ------------------------------------------------------------ state on disk

fs::path pid_file(const Deployment& d) { return d.state_dir / "supervisor.pid"; }
fs::path state_file(const Deployment& d) { return d.state_dir / "state.toml"; }
fs::path log_file(const Deployment& d, const std::string& child) { return d.state_dir / (child + ".log"); }

/// The supervisor's pid while one runs (it holds the lock on its pid file);
/// 0 while it is starting and has not written its pid yet.
std::optional<pid_t> running_supervisor(const Deployment& d) {
  const int fd = open(pid_file(d).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    flock(fd, LOCK_UN);
    close(fd);
    return std::nullopt;
  }
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  return n > 0 ? static_cast<pid_t>(std::atol(buf)) : 0;
}

/// Where a child is in its life. The supervisor moves it; the state file
/// records it by name for `deploy status` and `deploy down`.
enum class RunState { stopped, running, restarting };

std::string_view to_string(RunState s) {
  switch (s) {
    case RunState::stopped:
      return "stopped";
    case RunState::running:
      return "running";
    case RunState::restarting:
      return "restarting";
  }
  return "stopped";
}

/// What the state file says; a name this version does not know reads as
/// stopped, as a missing one does.
RunState parse_run_state(std::string_view text) {
  for (const auto s : {RunState::running, RunState::restarting})
    if (text == to_string(s)) return s;
  return RunState::stopped;
}

/// One child as the state file records it.
struct ChildState {
  std::string name;
  std::string kind;  ///< "instance" or "nginx"
  long long pid = 0;
  RunState state = RunState::stopped;
  long long restarts = 0;
  double started_at = 0;
  std::string last_exit;
};

std::map<std::string, ChildState> read_state(const Deployment& d) {
  std::map<std::string, ChildState> out;
  try {
    const auto root = toml::parse_file(state_file(d).string());
    if (const auto* children = root["child"].as_array()) {
      for (const auto& node : *children) {
        const auto* t = node.as_table();
        if (!t) continue;
        ChildState c;
        c.name = (*t)["name"].value_or(std::string());
        c.kind = (*t)["kind"].value_or(std::string());
        c.pid = (*t)["pid"].value_or(0LL);
        c.state = parse_run_state((*t)["state"].value_or(std::string_view()));
        c.restarts = (*t)["restarts"].value_or(0LL);
        c.started_at = (*t)["started_at"].value_or(0.0);
        c.last_exit = (*t)["last_exit"].value_or(std::string());
        out[c.name] = c;
      }
    }
  } catch (const std::exception&) {
    // No state yet, or caught mid-rename: the caller asks again.
  }
  return out;
}

/// A pipeline's `[pipeline] shutdown_grace_ms` (the runtime's default when
/// absent or not a plain integer): how long its instance may drain.
int pipeline_grace_ms(const fs::path& pipeline) {
  try {
    const auto root = toml::parse_file(pipeline.string());
    if (auto v = root["pipeline"]["shutdown_grace_ms"].value<std::int64_t>()) return static_cast<int>(*v);
  } catch (const std::exception&) {
  }
  return 10000;
}

/// What the supervisor allows an instance between SIGTERM and SIGKILL.
std::chrono::milliseconds stop_timeout(const DeployInstance& i) {
  return std::chrono::milliseconds(pipeline_grace_ms(i.pipeline) + 5000);
}

// ------------------------------------------------------------------ supervisor

struct Child {
  std::string name;
  bool is_nginx = false;
  const DeployInstance* instance = nullptr;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  fs::path log;
  fs::path cwd;
  pid_t pid = 0;
  RunState state = RunState::stopped;
  int restarts = 0;
  bool ever_started = false;
  double started_wall = 0;
  Clock::time_point started;
  double backoff_s = 0.5;
  Clock::time_point restart_at;
  std::string last_exit;
  std::chrono::milliseconds grace{5000};
  Clock::time_point kill_at;
  bool term_sent = false;
  bool kill_sent = false;
};

std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

/// What an instance runs with: the supervisor's environment, then `[shared]`,
/// then its own `env`, then its names.
std::vector<std::string> instance_environment(const Deployment& d, const DeployInstance& inst) {
  auto extra = d.shared;
  extra.insert(extra.end(), inst.env.begin(), inst.env.end());
  extra.emplace_back("NUDGE_DEPLOYMENT", d.name);
  extra.emplace_back("NUDGE_INSTANCE_NAME", inst.name);
  return environment_with(extra);
}

/// `nudge COMMAND PIPELINE --set ...`: the flags that give an instance its
/// ports, and its trust in the nginx in front (on this host), whose
/// X-Forwarded-For names each client for the per-address limits.
std::vector<std::string> instance_command(const std::string& exe, const std::string& command,
                                          const DeployInstance& inst) {
  return {exe,
          command,
          inst.pipeline.string(),
          "--set",
          "source.websocket.listen=" + inst.listen.to_string(),
          "--set",
          "admin.listen=" + inst.admin.to_string(),
          "--set",
          R"(source.websocket.trusted_proxies=["127.0.0.1","::1"])"};
}

std::string self_exe() {
  std::error_code ec;
  auto path = fs::read_symlink("/proc/self/exe", ec);
  std::string text = ec ? std::string("/proc/self/exe") : path.string();
  // Rebuilt while running: the new file is the one to start.
  if (const std::string gone = " (deleted)"; text.ends_with(gone)) text.resize(text.size() - gone.size());
  return text;
}

class Supervisor {
 public:
  explicit Supervisor(const Deployment& d) : d_(d), logger_("supervisor") {}

  int run() {
    const std::string exe = self_exe();
    for (const auto& inst : d_.instances) {
      Child c;
      c.name = inst.name;
      c.instance = &inst;
      c.argv = instance_command(exe, "run", inst);
      c.env = instance_environment(d_, inst);
      c.log = log_file(d_, inst.name);
      c.cwd = d_.path.parent_path();
      c.grace = stop_timeout(inst);
      children_.push_back(std::move(c));
    }
    Child nginx;
    nginx.name = "nginx";
    nginx.is_nginx = true;
    nginx.argv = {d_.nginx.string(), "-p", (d_.state_dir / "nginx").string() + "/", "-c", "nginx.conf", "-g",
                  "daemon off;"};
    nginx.env = environment_with({});
    nginx.log = log_file(d_, "nginx");
    nginx.cwd = d_.state_dir / "nginx";
    children_.push_back(std::move(nginx));

    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
      logger_.error("cannot watch signals: ", std::strerror(errno));
      return 1;
    }
    logger_.info("supervising deployment '", d_.name, "' from ", d_.path.string(), " (", d_.instances.size(),
                 " instances behind nginx on ", d_.listen.to_string(), ")");
    for (auto& c : children_) spawn(c);
    write_state();

    for (;;) {
      pollfd p{sfd, POLLIN, 0};
      poll(&p, 1, static_cast<int>(next_wake().count()));
      signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGTERM || sig == SIGINT) begin_stop(sig);
        else if (sig == SIGHUP) forward_reload();
      }
      reap();
      if (!stopping_) {
        for (auto& c : children_)
          if (c.state == RunState::restarting && Clock::now() >= c.restart_at) spawn(c);
      } else if (advance_stop()) {
        break;
      }
      if (dirty_) write_state();
    }
    write_state();
    logger_.info("deployment '", d_.name, "' stopped; supervisor exiting");
    close(sfd);
    return 0;
  }

 private:
  std::chrono::milliseconds next_wake() const {
    auto wake = Clock::now() + 1s;
    for (const auto& c : children_) {
      if (!stopping_ && c.state == RunState::restarting) wake = std::min(wake, c.restart_at);
      if (stopping_ && c.pid > 0) wake = std::min(wake, c.kill_at);
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()) + 1ms;
    return std::clamp(ms, std::chrono::milliseconds(1), std::chrono::milliseconds(1000));
  }

  void spawn(Child& c) {
    std::vector<char*> argv;
    for (auto& a : c.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : c.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      // The child: default signals, its own process group, gone with the supervisor.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) signal(s, SIG_DFL);
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      const int in = open("/dev/null", O_RDONLY);
      const int out = open(c.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (in < 0 || out < 0) _exit(126);
      dup2(in, 0);
      dup2(out, 1);
      dup2(out, 2);
      close_range(3, ~0U, 0);
      if (chdir(c.cwd.c_str()) != 0) {
        // Paths are absolute; the folder is only a convenience.
      }
      execve(argv[0], argv.data(), envp.data());
      const std::string message = "nudge deploy: cannot run " + c.argv[0] + ": " + std::strerror(errno) + "\n";
      if (write(2, message.data(), message.size()) < 0) _exit(127);
      _exit(127);
    }
    dirty_ = true;
    if (pid < 0) {
      c.last_exit = std::string("could not start: ") + std::strerror(errno);
      schedule_restart(c, 0);
      return;
    }
    if (c.ever_started) ++c.restarts;
    c.ever_started = true;
    c.pid = pid;
    c.state = RunState::running;
    c.started = Clock::now();
    c.started_wall = wall_seconds();
    c.term_sent = c.kill_sent = false;
    if (c.restarts == 0)
      logger_.info("started ", c.is_nginx ? "nginx" : "instance '" + c.name + "'", " as pid ", pid, "; log ",
                   c.log.string());
    else
      logger_.info("restarted ", c.is_nginx ? "nginx" : "instance '" + c.name + "'", " as pid ", pid, " (restart ",
                   c.restarts, ")");
  }

  void schedule_restart(Child& c, double ran_s) {
    if (ran_s >= 30) c.backoff_s = 0.5;
    const double delay = c.backoff_s;
    c.backoff_s = std::min(c.backoff_s * 2, 10.0);
    c.state = RunState::restarting;
    c.restart_at = Clock::now() + std::chrono::milliseconds(static_cast<int>(delay * 1000));
    logger_.warn(c.is_nginx ? std::string("nginx") : "instance '" + c.name + "'", " ", c.last_exit, " after ",
                 one_decimal(ran_s), " s; restarting it in ", one_decimal(delay), " s");
  }

  void reap() {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = std::find_if(children_.begin(), children_.end(), [&](const Child& c) { return c.pid == pid; });
      if (it == children_.end()) continue;
      Child& c = *it;
      const double ran = seconds_since(c.started);
      c.pid = 0;
      c.last_exit = "pid " + std::to_string(pid) + " " + describe_exit(status);
      dirty_ = true;
      if (stopping_) {
        c.state = RunState::stopped;
        logger_.info(c.is_nginx ? std::string("nginx") : "instance '" + c.name + "'", " stopped: ", c.last_exit);
      } else {
        schedule_restart(c, ran);
      }
    }
  }

  void begin_stop(int sig) {
    if (stopping_) {
      logger_.info("received ", sig == SIGINT ? "SIGINT" : "SIGTERM", " again; already stopping");
      return;
    }
    stopping_ = true;
    dirty_ = true;
    logger_.info("received ", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 "; stopping the instances (they drain), then nginx");
    for (auto& c : children_) {
      if (c.is_nginx) continue;
      if (c.pid > 0) {
        kill(c.pid, SIGTERM);
        c.term_sent = true;
        c.kill_at = Clock::now() + c.grace;
      } else {
        c.state = RunState::stopped;
      }
    }
  }

  /// True once everything has stopped.
  bool advance_stop() {
    bool instances_alive = false;
    for (auto& c : children_) {
      if (c.is_nginx) continue;
      if (c.state == RunState::restarting) c.state = RunState::stopped;
      if (c.pid <= 0) continue;
      instances_alive = true;
      if (!c.kill_sent && Clock::now() >= c.kill_at) {
        logger_.warn("instance '", c.name, "' (pid ", c.pid, ") did not stop within ", c.grace.count(),
                     " ms of SIGTERM; killing it");
        kill(-c.pid, SIGKILL);
        kill(c.pid, SIGKILL);
        c.kill_sent = true;
      }
    }
    Child& nginx = children_.back();
    if (nginx.state == RunState::restarting) nginx.state = RunState::stopped;
    if (instances_alive) return false;
    if (nginx.pid > 0 && !nginx.term_sent) {
      kill(nginx.pid, SIGTERM);
      nginx.term_sent = true;
      nginx.kill_at = Clock::now() + 5s;
    } else if (nginx.pid > 0 && !nginx.kill_sent && Clock::now() >= nginx.kill_at) {
      logger_.warn("nginx (pid ", nginx.pid, ") did not stop within 5 s of SIGTERM; killing it");
      kill(-nginx.pid, SIGKILL);
      kill(nginx.pid, SIGKILL);
      nginx.kill_sent = true;
    }
    return nginx.pid <= 0;
  }

  void forward_reload() {
    logger_.info("received SIGHUP; passing it to the instances (each re-reads its pipeline file)");
    for (auto& c : children_)
      if (!c.is_nginx && c.pid > 0) kill(c.pid, SIGHUP);
  }

  void write_state() {
    dirty_ = false;
    toml::table root;
    root.insert("supervisor", toml::table{{"pid", static_cast<std::int64_t>(getpid())},
                                          {"deployment", d_.name},
                                          {"file", d_.path.string()},
                                          {"public_url", d_.public_url()},
                                          {"stopping", stopping_},
                                          {"written_at", wall_seconds()}});
    toml::array children;
    for (const auto& c : children_) {
      toml::table t{{"name", c.name},
                    {"kind", c.is_nginx ? "nginx" : "instance"},
                    {"pid", static_cast<std::int64_t>(c.pid)},
                    {"state", std::string(to_string(c.state))},
                    {"restarts", static_cast<std::int64_t>(c.restarts)},
                    {"started_at", c.started_wall},
                    {"last_exit", c.last_exit},
                    {"log", c.log.string()}};
      if (c.instance) {
        t.insert("listen", c.instance->listen.to_string());
        t.insert("admin", c.instance->admin.to_string());
      } else {
        t.insert("listen", d_.listen.to_string());
      }
      children.push_back(std::move(t));
    }
    root.insert("child", std::move(children));
    const fs::path tmp = state_file(d_).string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "# Written by the supervisor of `nudge deploy`; read by `nudge deploy status`.\n" << root << "\n";
    }
    std::error_code ec;
    fs::rename(tmp, state_file(d_), ec);
    if (ec) logger_.warn("cannot write ", state_file(d_).string(), ": ", ec.message());
  }

  const Deployment& d_;
  NamedLogger logger_;
  std::vector<Child> children_;
  bool stopping_ = false;
  bool dirty_ = true;
};

int cmd_supervise(const Deployment& d) {
  // Every exit and restart is logged: at most a couple a second per child
  // (the backoff), so nothing is held back as a repeat.
  LogOutput::instance().set_repeat_window(std::chrono::milliseconds(0));
  NamedLogger logger("supervisor");
  const int fd = open(pid_file(d).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    logger.error("cannot open ", pid_file(d).string(), ": ", std::strerror(errno));
    return 1;
  }
  // `status` may hold a shared lock for an instant: try for a while.
  const auto deadline = Clock::now() + 3s;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (Clock::now() > deadline) {
      logger.error("another supervisor of deployment '", d.name, "' is running; exiting");
      return 1;
    }
    std::this_thread::sleep_for(50ms);
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    logger.error("cannot write ", pid_file(d).string(), ": ", std::strerror(errno));
    return 1;
  }
  Supervisor supervisor(d);
  const int rc = supervisor.run();
  if (ftruncate(fd, 0) != 0) {
    // The lock, not the content, says whether a supervisor runs.
  }
  close(fd);
  return rc;
}

// ------------------------------------------------------------------ commands

/// Runs argv with stdout and stderr to `output`; its wait status, or -1 when
/// it did not end within `timeout` (then it is killed).
int run_with_timeout(const std::vector<std::string>& args, const fs::path& output, std::chrono::milliseconds timeout,
                     std::vector<std::string> env = environment_with({})) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (pid < 0) return -1;
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  return status;
}

bool as_root_with_nobody() { return geteuid() == 0 && getpwnam("nobody") && getgrnam("nogroup"); }

/// Starts `nudge deploy __supervise FILE` as a daemon: double fork, setsid,
/// its output to STATE/supervisor.log.
bool start_supervisor(const Deployment& d, std::string& error) {
  const std::string exe = self_exe();
  std::vector<std::string> args = {exe, "deploy", "__supervise", d.path.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = log_file(d, "supervisor").string();
  std::cout.flush();
  std::cerr.flush();
  const pid_t first = fork();
  if (first < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  if (first == 0) {
    setsid();
    const pid_t second = fork();
    if (second != 0) _exit(second < 0 ? 1 : 0);
    umask(022);
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    close_range(3, ~0U, 0);
    if (chdir("/") != 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(first, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = "could not start the supervisor (" + describe_exit(status) + ")";
    return false;
  }
  return true;
}

int cmd_up(const Deployment& d) {
  const auto start = Clock::now();
  if (auto pid = running_supervisor(d)) {
    std::cout << "deployment '" << d.name << "' is already up (supervisor pid " << *pid << "): " << d.public_url()
              << "\nsee `nudge deploy status " << d.file << "`\n";
    return 0;
  }
  // Everything that can be checked before starting anything, all at once.
  std::vector<std::string> problems;
  if (access(d.nginx.c_str(), X_OK) != 0)
    problems.push_back("nginx is not installed at " + d.nginx.string() +
                       " (Debian: apt-get install nginx-light, or scripts/install-deps; or set deployment.nginx)");
  for (const auto& [variable, value] : d.shared) {
    for (const auto& server : server_addresses(value)) {
      std::string error;
      if (!reachable(server, 2s, error))
        problems.push_back("shared server " + variable + " (" + server.to_string() + ") is not reachable: " + error);
    }
  }
  auto check_port = [&](const HostPort& at, const std::string& what) {
    if (port_in_use(at)) problems.push_back(what + " " + at.to_string() + " is already in use");
  };
  check_port(d.listen, "the public port (deployment.listen)");
  for (const auto& i : d.instances) {
    check_port(i.listen, "instance '" + i.name + "' listen");
    check_port(i.admin, "instance '" + i.name + "' admin");
  }
  // Each pipeline as its instance will run it (its ports, its environment): `nudge validate`.
  std::error_code ec;
  fs::create_directories(d.state_dir, ec);
  if (ec) {
    std::cerr << "nudge: cannot create " << d.state_dir.string() << ": " << ec.message() << "\n";
    return 1;
  }
  const std::string exe = self_exe();
  for (const auto& i : d.instances) {
    const fs::path out = d.state_dir / (i.name + ".validate.log");
    const int status = run_with_timeout(instance_command(exe, "validate", i), out, 30s, instance_environment(d, i));
    if (status != 0) {
      std::string output = tail_file(out, 20);
      while (!output.empty() && output.back() == '\n') output.pop_back();
      problems.push_back("instance '" + i.name + "': " + i.pipeline.string() + " does not validate (" +
                         (status < 0 ? std::string("timed out") : describe_exit(status)) + "):\n" + output);
    }
    fs::remove(out, ec);
  }
  if (!problems.empty()) {
    for (const auto& p : problems) std::cerr << "nudge: " << p << "\n";
    std::cerr << "nudge: deployment '" << d.name << "' not started: " << problems.size() << " problem"
              << (problems.size() == 1 ? "" : "s") << "\n";
    return 1;
  }

  fs::create_directories(d.state_dir / "nginx" / "tmp", ec);
  if (ec) {
    std::cerr << "nudge: cannot create " << (d.state_dir / "nginx").string() << ": " << ec.message() << "\n";
    return 1;
  }
  fs::remove(state_file(d), ec);
  const fs::path conf = d.state_dir / "nginx" / "nginx.conf";
  {
    std::ofstream out(conf, std::ios::trunc);
    out << nginx_config(d, as_root_with_nobody());
    if (!out) {
      std::cerr << "nudge: cannot write " << conf.string() << "\n";
      return 1;
    }
  }
  const fs::path test_log = d.state_dir / "nginx" / "config-test.log";
  const int test = run_with_timeout({d.nginx.string(), "-t", "-q", "-p", (d.state_dir / "nginx").string() + "/", "-c",
                                     "nginx.conf", "-g", "daemon off;"},
                                    test_log, 15s);
  if (test != 0) {
    std::cerr << "nudge: nginx rejects the generated " << conf.string() << ":\n" << tail_file(test_log, 20);
    return 1;
  }

  std::cout << "starting deployment '" << d.name << "' (" << d.instances.size() << " instances behind nginx on "
            << d.listen.to_string() << "); logs in " << d.state_dir.string() << "/" << std::endl;
  std::string error;
  if (!start_supervisor(d, error)) {
    std::cerr << "nudge: " << error << "\n";
    return 1;
  }
  // The supervisor takes its lock first thing.
  std::optional<pid_t> supervisor;
  for (auto until = Clock::now() + 10s; Clock::now() < until; std::this_thread::sleep_for(50ms))
    if ((supervisor = running_supervisor(d)) && *supervisor > 0) break;
  if (!supervisor || *supervisor <= 0) {
    std::cerr << "nudge: the supervisor did not start; its log (" << log_file(d, "supervisor").string() << "):\n"
              << tail_file(log_file(d, "supervisor"), 20);
    return 1;
  }
  std::cout << "  supervisor pid " << *supervisor << std::endl;

  const auto deadline = start + std::chrono::seconds(d.ready_timeout_s);
  std::vector<bool> ready(d.instances.size(), false);
  std::vector<std::string> why(d.instances.size(), "not checked yet");
  std::size_t ready_count = 0;
  std::string nginx_error = "not checked yet";
  bool nginx_up = false;
  while (Clock::now() < deadline && (ready_count < d.instances.size() || !nginx_up)) {
    if (!running_supervisor(d)) {
      std::cerr << "nudge: the supervisor exited; its log (" << log_file(d, "supervisor").string() << "):\n"
                << tail_file(log_file(d, "supervisor"), 20);
      return 1;
    }
    for (std::size_t i = 0; i < d.instances.size(); ++i) {
      if (ready[i]) continue;
      bool ok = false;
      why[i] = readiness(d.instances[i].admin, ok);
      if (!ok) continue;
      ready[i] = true;
      ++ready_count;
      std::cout << "  " << d.instances[i].name << " ready after " << one_decimal(seconds_since(start)) << " s (ws "
                << d.instances[i].listen.to_string() << ", admin http://" << d.instances[i].admin.to_string() << ")"
                << std::endl;
    }
    if (!nginx_up && (nginx_up = reachable(d.listen, 1s, nginx_error)))
      std::cout << "  nginx listening on " << d.listen.to_string() << std::endl;
    if (ready_count < d.instances.size() || !nginx_up) std::this_thread::sleep_for(250ms);
  }
  if (ready_count < d.instances.size() || !nginx_up) {
    std::cerr << "nudge: deployment '" << d.name << "' not ready after " << d.ready_timeout_s << " s:\n";
    for (std::size_t i = 0; i < d.instances.size(); ++i) {
      if (ready[i]) continue;
      std::cerr << "  " << d.instances[i].name << ": /readyz at http://" << d.instances[i].admin.to_string() << ": "
                << why[i] << "\n  last lines of " << log_file(d, d.instances[i].name).string() << ":\n"
                << tail_file(log_file(d, d.instances[i].name), 15);
    }
    if (!nginx_up)
      std::cerr << "  nginx: nothing accepts on " << d.listen.to_string() << " (" << nginx_error
                << ")\n  last lines of " << (d.state_dir / "nginx" / "error.log").string() << ":\n"
                << tail_file(d.state_dir / "nginx" / "error.log", 15);
    std::cerr << "nudge: the supervisor keeps restarting what exits; `nudge deploy status " << d.file
              << "` shows it, `nudge deploy down " << d.file << "` stops it\n";
    return 1;
  }
  std::cout << "deployment '" << d.name << "' is up in " << one_decimal(seconds_since(start))
            << " s: " << d.public_url() << "\n";
  return 0;
}

int cmd_down(const Deployment& d) {
  const auto start = Clock::now();
  auto pid = running_supervisor(d);
  for (auto until = Clock::now() + 2s; pid && *pid == 0 && Clock::now() < until; pid = running_supervisor(d))
    std::this_thread::sleep_for(50ms);
  if (!pid) {
    std::cout << "deployment '" << d.name << "' is not up (no supervisor running)\n";
    return 0;
  }
  // What runs now, so each stop is reported however fast it comes.
  std::map<std::string, RunState> seen;
  for (const auto& [name, c] : read_state(d)) seen[name] = c.state;
  if (*pid <= 0 || kill(*pid, SIGTERM) != 0) {
    std::cerr << "nudge: cannot signal the supervisor (pid " << *pid << "): " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cout << "stopping deployment '" << d.name << "' (supervisor pid " << *pid
            << "): the instances drain, then nginx stops" << std::endl;
  std::chrono::milliseconds longest{5000};
  for (const auto& i : d.instances) longest = std::max(longest, stop_timeout(i));
  const auto deadline = Clock::now() + longest + 15s;
  std::vector<std::string> stopped;
  auto report = [&] {
    for (const auto& [name, c] : read_state(d)) {
      const auto before = seen.find(name);
      const bool was_stopped = before != seen.end() && before->second == RunState::stopped;
      if (c.state == RunState::stopped && !was_stopped) {
        if (before != seen.end() && before->second == RunState::restarting)
          std::cout << "  " << name << " stopped (it was waiting to be restarted; last " << c.last_exit << ")"
                    << std::endl;
        else
          std::cout << "  " << name << " stopped after " << one_decimal(seconds_since(start)) << " s ("
                    << (c.last_exit.empty() ? "not running" : c.last_exit) << ")" << std::endl;
        stopped.push_back(name);
      }
      seen[name] = c.state;
    }
  };
  while (running_supervisor(d) && Clock::now() < deadline) {
    report();
    std::this_thread::sleep_for(100ms);
  }
  if (running_supervisor(d)) {
    std::cerr << "nudge: the supervisor did not stop within " << (longest + 15s).count() / 1000
              << " s; killing it (its children get SIGTERM)\n";
    kill(*pid, SIGKILL);
    return 1;
  }
  report();
  std::cout << "deployment '" << d.name << "' stopped in " << one_decimal(seconds_since(start)) << " s";
  if (!stopped.empty()) {
    std::cout << ":";
    for (const auto& s : stopped) std::cout << " " << s;
  }
  std::cout << "\n";
  return 0;
}

int cmd_status(const Deployment& d) {
  const auto supervisor = running_supervisor(d);
  const auto state = read_state(d);
  const double now = wall_seconds();
  bool all_good = supervisor.has_value();
  std::cout << "deployment '" << d.name << "' (" << d.file << "): ";
  if (supervisor) std::cout << "supervisor pid " << *supervisor << "\n";
  else std::cout << "down (no supervisor running)\n";

  struct Row {
    std::string cells[8];
  };
  std::vector<Row> rows;
  rows.push_back({{"INSTANCE", "PID", "STATE", "RESTARTS", "UPTIME", "READYZ", "LISTEN", "ADMIN"}});
  auto row_for = [&](const std::string& name, const std::string& listen, const std::string& admin,
                     const std::string& readyz) {
    Row r;
    const auto it = state.find(name);
    const bool known = supervisor && it != state.end();
    const RunState st = known ? it->second.state : RunState::stopped;
    const bool running = st == RunState::running && it->second.pid > 0;
    r.cells[0] = name;
    r.cells[1] = running ? std::to_string(it->second.pid) : "-";
    r.cells[2] = to_string(st);
    r.cells[3] = known ? std::to_string(it->second.restarts) : "-";
    r.cells[4] = running ? format_uptime(now - it->second.started_at) : "-";
    r.cells[5] = readyz;
    r.cells[6] = listen;
    r.cells[7] = admin;
    if (!running) all_good = false;
    return r;
  };
  for (const auto& i : d.instances) {
    bool ok = false;
    std::string readyz = supervisor ? readiness(i.admin, ok) : "-";
    if (!ok) all_good = false;
    rows.push_back(row_for(i.name, i.listen.to_string(), i.admin.to_string(), readyz));
  }
  {
    std::string error;
    const bool accepting = supervisor && reachable(d.listen, 1s, error);
    if (!accepting) all_good = false;
    rows.push_back(row_for("nginx", d.listen.to_string(), "-",
                           !supervisor ? "-"
                           : accepting ? "accepting"
                                       : "not accepting (" + error + ")"));
  }
  std::size_t width[8] = {};
  for (const auto& r : rows)
    for (int c = 0; c < 8; ++c) width[c] = std::max(width[c], r.cells[c].size());
  for (const auto& r : rows) {
    std::string line;
    for (int c = 0; c < 8; ++c) {
      line += r.cells[c];
      if (c < 7) line += std::string(width[c] - r.cells[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
  std::cout << "public URL: " << d.public_url() << "\n";
  return all_good ? 0 : 1;
}

}  // namespace

int run_deploy(const std::string& command, const std::string& file) {
  Diagnostics diags;
  auto deployment = load_deployment(file, diags);
  if (!deployment) {
    std::cerr << diags.to_string();
    std::cerr << "nudge: " << diags.items().size() << " error" << (diags.items().size() == 1 ? "" : "s") << " in "
              << file << "\n";
    return command == "status" ? 2 : 1;
  }
  if (command == "up") return cmd_up(*deployment);
  if (command == "down") return cmd_down(*deployment);
  if (command == "status") return cmd_status(*deployment);
  return cmd_supervise(*deployment);
}

}  // namespace nudge::runtime
