#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

struct redisAsyncContext;

namespace nudge::plugins::redis {

/// Drives a hiredis async context from an Asio executor, like hiredis's own
/// adapters for libevent or libuv: hiredis says through its ev hooks when it
/// wants to read or write, this waits for that with
/// stream_descriptor::async_wait on the context's socket and then calls
/// redisAsyncHandleRead or redisAsyncHandleWrite. Nothing blocks and no thread
/// is started.
///
/// hiredis owns the socket: when it cleans up, the descriptor is released
/// (deregistered from the reactor), never closed. The adapter keeps itself
/// alive for as long as it is attached, so the raw pointer hiredis holds in
/// ev.data stays valid until the cleanup hook; pending waits then complete
/// with operation_aborted and do nothing.
class AsioAdapter : public std::enable_shared_from_this<AsioAdapter> {
 public:
  /// Called from the cleanup hook, inside hiredis, while the context is being
  /// freed (it is still readable; do not call hiredis on it).
  using CleanupFn = std::function<void(redisAsyncContext*)>;

  /// Attaches to `ac`, which must not have an event library yet. Returns false
  /// and sets `error` when it has one or its socket cannot be registered;
  /// `ac` is then left as it was.
  static bool attach(redisAsyncContext* ac, const boost::asio::any_io_executor& executor, CleanupFn on_cleanup,
                     std::string& error);

  AsioAdapter(redisAsyncContext* ac, const boost::asio::any_io_executor& executor, CleanupFn on_cleanup);
  ~AsioAdapter();
  AsioAdapter(const AsioAdapter&) = delete;
  AsioAdapter& operator=(const AsioAdapter&) = delete;

 private:
  // hiredis's ev hooks; `privdata` is the adapter.
  static void add_read(void* privdata);
  static void del_read(void* privdata);
  static void add_write(void* privdata);
  static void del_write(void* privdata);
  static void cleanup(void* privdata);

  void arm_read();
  void arm_write();
  void detach();

  redisAsyncContext* ac_;
  boost::asio::posix::stream_descriptor socket_;
  CleanupFn on_cleanup_;
  std::shared_ptr<AsioAdapter> self_;  // held while attached
  bool want_read_ = false;
  bool want_write_ = false;
  bool reading_ = false;  // a wait_read is outstanding
  bool writing_ = false;  // a wait_write is outstanding
};

}  // namespace nudge::plugins::redis
