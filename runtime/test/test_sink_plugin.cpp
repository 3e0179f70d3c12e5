// A minimal sink used by the runtime's tests: stores nothing, accepts a few
// keys of each type so config binding can be tested against a real plugin.
#include "nudge/sdk.hpp"

namespace {

class TestSink final : public nudge::Sink {
 public:
  TestSink(const nudge::Config&, nudge::Context&) {}
  static nudge::ConfigSchema schema() {
    nudge::ConfigSchema s;
    s.required("path", nudge::ConfigType::string, "where to write");
    s.integer("batch_size", 100, "rows per batch").range(1, 10000);
    s.boolean("verbose", false, "log each batch");
    s.number("ratio", 0.5, "a number");
    s.string_list("tags", {}, "labels");
    s.string("mode", "fast", "how").one_of({"fast", "safe"});
    return s;
  }
  nudge::Status start() override { return nudge::Status::success(); }
  void write(nudge::BatchPtr, nudge::Completion done) override { done(nudge::Status::success()); }
  void stop(std::function<void()> done) override { done(); }
};

}  // namespace

NUDGE_PLUGIN(TestSink, "testsink", "9.9.9", "A sink for the runtime's tests")
