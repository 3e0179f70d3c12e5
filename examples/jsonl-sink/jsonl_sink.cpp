// A sink that appends each message to a file as one JSON line, rotating the
// file by size: `messages.jsonl`, then `messages.jsonl.1` (the newest rotated)
// up to `.<keep>`. The plugin guide's example of a sink (docs/plugin-guide.md).
//
// What the Sink contract asks, and how this one meets it:
// - never block the event loop: appends and fsync run on a BlockingWorker;
// - idempotent by message id: the ids in the current file are remembered
//   (read back at start), so a batch written again after a crash or a retry
//   adds no line; a failed append is cut off again, so a batch is all in or
//   not at all.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <unordered_set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <nudge/sdk.hpp>

namespace example {

using namespace nudge;

/// `"key":"value"`, the value escaped as JSON wants (payloads are valid UTF-8:
/// the runtime checks them at ingress).
void member(rapidjson::Writer<rapidjson::StringBuffer>& json, const char* key, std::string_view value) {
  json.Key(key);
  json.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

/// The file and what is in it; touched by the worker thread only.
class JsonlFile {
 public:
  JsonlFile(std::filesystem::path path, std::int64_t max_bytes, std::int64_t keep)
      : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}
  ~JsonlFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status open() {
    std::error_code ec;
    if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path(), ec);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return Status::error(StatusCode::invalid_argument,
                           "cannot open '" + path_.string() + "': " + std::strerror(errno));
    // The ids already in the file: a batch delivered again adds nothing.
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);)
      if (line.size() > 45 && line.starts_with("{\"id\":\"")) ids_.insert(line.substr(7, 36));
    size_ = static_cast<std::int64_t>(std::filesystem::file_size(path_, ec));
    return Status::success();
  }

  Status append(const Batch& batch) {
    std::string lines;
    std::vector<std::string> added;
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> json(buffer);
    for (const auto& m : batch) {
      std::string id = m->id.to_string();
      if (ids_.contains(id)) continue;
      // {"id":"...","room":...,"sender":...,"text":...,"ts":...}: open() reads the id back at its start.
      buffer.Clear();
      json.Reset(buffer);
      json.StartObject();
      member(json, "id", id);
      member(json, "room", m->room);
      member(json, "sender", m->sender);
      member(json, "text", m->payload);
      json.Key("ts");
      json.Int64(m->timestamp_ms);
      json.EndObject();
      lines.append(buffer.GetString(), buffer.GetSize());
      lines += '\n';
      added.push_back(std::move(id));
    }
    if (lines.empty()) return Status::success();
    if (size_ > 0 && size_ + static_cast<std::int64_t>(lines.size()) > max_bytes_)
      if (auto s = rotate(); !s.ok()) return s;
    std::size_t written = 0;
    while (written < lines.size()) {
      const ssize_t n = ::write(fd_, lines.data() + written, lines.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int error = errno;
        // All or nothing: what went in of this batch is cut off again.
        if (::ftruncate(fd_, size_) != 0) {
        }
        return Status::error(StatusCode::unavailable,
                             "cannot append to '" + path_.string() + "': " + std::strerror(error));
      }
      written += static_cast<std::size_t>(n);
    }
    if (::fdatasync(fd_) != 0)
      return Status::error(StatusCode::unavailable, "cannot sync '" + path_.string() + "': " + std::strerror(errno));
    size_ += static_cast<std::int64_t>(lines.size());
    for (auto& id : added) ids_.insert(std::move(id));
    return Status::success();
  }

 private:
  Status rotate() {
    ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    const auto numbered = [&](std::int64_t n) {
      return std::filesystem::path(path_.string() + "." + std::to_string(n));
    };
    std::filesystem::remove(numbered(keep_), ec);
    for (std::int64_t n = keep_ - 1; n >= 1; --n)
      if (std::filesystem::exists(numbered(n))) std::filesystem::rename(numbered(n), numbered(n + 1), ec);
    if (keep_ > 0) std::filesystem::rename(path_, numbered(1), ec);
    else std::filesystem::remove(path_, ec);
    ids_.clear();
    size_ = 0;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return Status::error(StatusCode::unavailable, "cannot reopen '" + path_.string() + "': " + std::strerror(errno));
    return Status::success();
  }

  std::filesystem::path path_;
  std::int64_t max_bytes_;
  std::int64_t keep_;
  int fd_ = -1;
  std::int64_t size_ = 0;
  std::unordered_set<std::string> ids_;
};

class JsonlSink final : public Sink {
 public:
  JsonlSink(const Config& config, Context& context)
      : context_(context),
        file_(std::make_shared<JsonlFile>(config.get_string("path"), config.get_int("max_bytes"),
                                          config.get_int("keep"))),
        lines_(context.metrics().counter("lines_written", "Messages appended to the file")) {}

  static ConfigSchema schema() {
    ConfigSchema s;
    s.required("path", ConfigType::string, "File the messages are appended to, one JSON object per line")
        .with_example("\"var/messages.jsonl\"");
    s.integer("max_bytes", 64 * 1024 * 1024, "Size at which the file is rotated to <path>.1")
        .range(1024, std::int64_t{1} << 40);
    s.integer("keep", 5, "Rotated files kept (<path>.1 is the newest); 0 keeps none").range(0, 1000);
    return s;
  }

  Status start() override {
    worker_ = std::make_unique<BlockingWorker>(context_.executor());
    auto status = file_->open();
    if (status.ok()) context_.logger().info("appending messages to a JSON-lines file");
    return status;
  }

  void write(BatchPtr batch, Completion done) override {
    worker_->run([file = file_, batch] { return file->append(*batch); },
                 [this, size = batch->size(), done = std::move(done)](Status status) {
                   if (status.ok()) lines_.add(size);
                   done(std::move(status));
                 });
  }

  void stop(std::function<void()> done) override {
    if (worker_) worker_->shutdown();
    done();
  }

 private:
  Context& context_;
  std::shared_ptr<JsonlFile> file_;
  std::unique_ptr<BlockingWorker> worker_;
  Counter& lines_;
};

}  // namespace example

NUDGE_PLUGIN(example::JsonlSink, "jsonl", "0.1.0", "Appends messages to a JSON-lines file, rotated by size")
