// `nudge tap [ADMIN_URL] [--token T] [--stage ...] [--room ...] [--sample F] [--limit N]
// [--max-text B] [--format json|text]`: streams GET /tap of a running instance.
#include "cli/tap/tap.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>

#include <rapidjson/document.h>
#include <boost/url/url.hpp>

#include "cli/admin_client.hpp"
#include "cli/commands.hpp"

namespace nudge::runtime {

namespace tap {

namespace {

std::string_view member(const rapidjson::Value& object, const char* name) {
  const auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

std::uint64_t number(const rapidjson::Value& object, const char* name) {
  const auto it = object.FindMember(name);
  return it != object.MemberEnd() && it->value.IsUint64() ? it->value.GetUint64() : 0;
}

volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

}  // namespace

std::string text_line(std::string_view json) {
  rapidjson::Document event;
  event.Parse(json.data(), json.size());
  if (event.HasParseError() || !event.IsObject() || !event.HasMember("stage")) return std::string(json);
  const auto time = member(event, "time");
  std::string out(time.size() >= 23 ? time.substr(11, 12) : time);
  std::string where = std::string(member(event, "stage")) + "." + std::string(member(event, "point"));
  where.resize(std::max<std::size_t>(where.size(), 19), ' ');
  out += " " + where + " #" + std::string(member(event, "room")) + " " + std::string(member(event, "sender")) + ": " +
         std::string(member(event, "text"));
  if (event.HasMember("truncated")) out += "…";
  if (const auto reason = member(event, "reason"); !reason.empty()) out += " (" + std::string(reason) + ")";
  return out;
}

void Printer::feed(std::string_view data) {
  while (!data.empty()) {
    const auto newline = data.find('\n');
    if (newline == std::string_view::npos) {
      partial_.append(data);
      return;
    }
    if (partial_.empty()) {
      line(data.substr(0, newline));
    } else {
      partial_.append(data.substr(0, newline));
      line(partial_);
      partial_.clear();
    }
    data.remove_prefix(newline + 1);
  }
}

void Printer::line(std::string_view text) {
  if (text.empty()) return;
  if (text.starts_with("{\"notice\"")) {
    rapidjson::Document notice;
    notice.Parse(text.data(), text.size());
    if (notice.HasParseError() || !notice.IsObject()) return;
    const auto kind = member(notice, "notice");
    if (kind == "missed") {
      missed_ = number(notice, "missed");
      err_ << "nudge tap: missed " << missed_ << " events so far (queue full " << number(notice, "queue_full")
           << ", over the rate " << number(notice, "over_rate") << ")\n";
    } else if (kind == "end") {
      missed_ = number(notice, "missed");
      ended_ = true;
    }
    return;
  }
  ++events_;
  if (format_ == Format::json) out_ << text << '\n';
  else out_ << text_line(text) << '\n';
}

}  // namespace tap

int cmd_tap(const CommandLine& cl) {
  std::string error;
  const auto url = parse_admin_url(cl.argument.empty() ? "http://127.0.0.1:9100" : cl.argument, error);
  if (!url) {
    std::cerr << "nudge tap: " << error << "\n";
    return 2;
  }
  std::string token = cl.token;
  if (const char* env = std::getenv("NUDGE_ADMIN_TOKEN"); token.empty() && env) token = env;
  AdminHeaders headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);

  boost::urls::url target("/tap");
  auto join = [](const std::vector<std::string>& items) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "" : ",") + item;
    return text;
  };
  if (!cl.tap.stages.empty()) target.params().append({"stage", join(cl.tap.stages)});
  for (const auto& room : cl.tap.rooms) target.params().append({"room", room});
  if (cl.tap.sample < 1.0) target.params().append({"sample", std::to_string(cl.tap.sample)});
  if (cl.tap.limit) target.params().append({"limit", std::to_string(cl.tap.limit)});
  if (cl.tap.max_text >= 0) target.params().append({"max_text", std::to_string(cl.tap.max_text)});

  struct sigaction action {
  }, old_int{}, old_term{};
  action.sa_handler = tap::on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  tap::g_stop = 0;

  tap::Printer printer(cl.tap.format == "text" ? tap::Format::text : tap::Format::json, std::cout, std::cerr);
  const auto response = admin_stream(
      *url, std::string(target.encoded_target()), headers,
      [&](unsigned status) {
        if (status == 200) std::cerr << "nudge tap: watching " << url->base << " (Ctrl-C stops)" << std::endl;
      },
      [&](std::string_view data) {
        printer.feed(data);
        std::cout.flush();
      },
      [] { return tap::g_stop != 0; });
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);

  if (response.status == 0) {
    std::cerr << "nudge tap: cannot reach the admin endpoint at " << url->base << ": " << response.error
              << "\n(is the instance running with an [admin] table?)\n";
    return 1;
  }
  if (response.status != 200) {
    std::cerr << "nudge tap: " << response.status << " " << response.reason << ": " << response.body;
    if (response.status == 401 && token.empty())
      std::cerr << "(nudge tap sent no token: give it with --token or $NUDGE_ADMIN_TOKEN)\n";
    return 1;
  }
  std::cerr << "nudge tap: " << printer.events() << " events, " << printer.missed() << " missed\n";
  if (printer.ended() || response.error == "cancelled") return 0;
  std::cerr << "nudge tap: the stream ended: " << (response.error.empty() ? "closed by the instance" : response.error)
            << "\n";
  return 1;
}

}  // namespace nudge::runtime
