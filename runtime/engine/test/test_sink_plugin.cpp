// A minimal sink used by the runtime's tests: stores nothing, accepts a few
// keys of each type so config binding can be tested against a real plugin.
// `verbose` and `mode` are live; `mode = "safe"` is refused by reconfigure,
// so a reload's all-or-nothing rule can be seen; readiness follows `path`.
#include "nudge/sdk.hpp"

namespace {

class TestSink final : public nudge::Sink {
 public:
  TestSink(const nudge::Config& config, nudge::Context&) : path_(config.get_string("path")) {}
  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("path", nudge::ConfigType::string, "where to write");
    s.integer("batch_size", 100, "rows per batch").range(1, 10000);
    s.boolean("verbose", false, "log each batch").reloadable();
    s.number("ratio", 0.5, "a number");
    s.string_list("tags", {}, "labels");
    s.string("mode", "fast", "how").one_of({"fast", "safe"}).reloadable();
    return s;
  }
  nudge::Status start() override { return nudge::Status::success(); }
  void write(nudge::BatchPtr, nudge::Completion done) override { done(nudge::Status::success()); }
  void stop(std::function<void()> done) override { done(); }
  nudge::Readiness readiness() const override {
    return path_ == "unready" ? nudge::Readiness::no("told to be unready") : nudge::Readiness::yes();
  }
  nudge::Status reconfigure(const nudge::Config& config) override {
    if (config.get_string("mode") == "safe")
      return nudge::Status::error(nudge::StatusCode::invalid_argument, "mode \"safe\" cannot be taken live");
    return nudge::Status::success();
  }

 private:
  std::string path_;
};

}  // namespace

NUDGE_PLUGIN(TestSink, "testsink", "9.9.9", "A sink for the runtime's tests")
