#pragma once

#include <memory>
#include <vector>

#include "config.hpp"
#include "nudge/sdk.hpp"

namespace nudge::plugins::http {

struct Hub;
struct Listener;

/// The publish API: backends POST messages into rooms over HTTP
/// (docs/http-api.md). Holds no clients of its own, so it delivers nothing
/// and wants no room; in a pipeline it sits beside a source that does.
class HttpSource final : public Source {
 public:
  HttpSource(const Config& config, Context& context);
  ~HttpSource() override;

  static ConfigSchema schema() { return HttpConfig::schema(); }

  /// The port the listener is bound to (after start; tests listen on port 0).
  std::uint16_t port() const noexcept { return bound_port_; }

  // Source
  Status start(Ingress& ingress) override;
  void deliver(const MessagePtr& message) override;
  void stop_intake() override;
  // Plugin
  void stop(std::function<void()> done) override;
  Readiness readiness() const override;

 private:
  Status listen();
  void do_accept(Listener& listener);

  Context& context_;
  std::shared_ptr<Hub> hub_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::uint16_t bound_port_ = 0;
  bool started_ = false;
};

}  // namespace nudge::plugins::http
