#include "hiredis_asio.hpp"

#include <utility>

#include <hiredis/async.h>

#include <boost/asio/error.hpp>

namespace nudge::plugins::redis {

namespace asio = boost::asio;
using wait_type = asio::posix::descriptor_base::wait_type;

bool AsioAdapter::attach(redisAsyncContext* ac, const asio::any_io_executor& executor, CleanupFn on_cleanup,
                         std::string& error) {
  if (ac->ev.data != nullptr) {
    error = "the hiredis context already has an event library attached";
    return false;
  }
  auto adapter = std::make_shared<AsioAdapter>(ac, executor, std::move(on_cleanup));
  boost::system::error_code ec;
  adapter->socket_.assign(ac->c.fd, ec);
  if (ec) {
    error = "cannot watch the socket: " + ec.message();
    adapter->ac_ = nullptr;
    return false;
  }
  adapter->self_ = adapter;
  ac->ev.data = adapter.get();
  ac->ev.addRead = &AsioAdapter::add_read;
  ac->ev.delRead = &AsioAdapter::del_read;
  ac->ev.addWrite = &AsioAdapter::add_write;
  ac->ev.delWrite = &AsioAdapter::del_write;
  ac->ev.cleanup = &AsioAdapter::cleanup;
  return true;
}

AsioAdapter::AsioAdapter(redisAsyncContext* ac, const asio::any_io_executor& executor, CleanupFn on_cleanup)
    : ac_(ac), socket_(executor), on_cleanup_(std::move(on_cleanup)) {}

AsioAdapter::~AsioAdapter() {
  // Never close: the socket is hiredis's.
  if (socket_.is_open()) socket_.release();
}

void AsioAdapter::add_read(void* privdata) {
  if (!privdata) return;
  auto* self = static_cast<AsioAdapter*>(privdata);
  self->want_read_ = true;
  self->arm_read();
}

void AsioAdapter::del_read(void* privdata) {
  if (privdata) static_cast<AsioAdapter*>(privdata)->want_read_ = false;
}

void AsioAdapter::add_write(void* privdata) {
  if (!privdata) return;
  auto* self = static_cast<AsioAdapter*>(privdata);
  self->want_write_ = true;
  self->arm_write();
}

void AsioAdapter::del_write(void* privdata) {
  if (privdata) static_cast<AsioAdapter*>(privdata)->want_write_ = false;
}

void AsioAdapter::cleanup(void* privdata) {
  if (!privdata) return;
  auto* self = static_cast<AsioAdapter*>(privdata);
  // Keeps the adapter alive to the end of this hook even if no wait holds it.
  const std::shared_ptr<AsioAdapter> keep = std::move(self->self_);
  redisAsyncContext* ac = self->ac_;
  self->detach();
  if (ac) {
    ac->ev.data = nullptr;
    if (self->on_cleanup_) std::exchange(self->on_cleanup_, nullptr)(ac);
  }
}

void AsioAdapter::detach() {
  ac_ = nullptr;
  want_read_ = want_write_ = false;
  // Outstanding waits complete with operation_aborted; the fd stays open for
  // hiredis to close.
  if (socket_.is_open()) socket_.release();
}

// A wait left outstanding after del_read/del_write is harmless: when it fires
// the wish is gone and nothing is called. Waits are never cancelled one by
// one, since cancel() would abort the other direction's wait as well.
void AsioAdapter::arm_read() {
  if (reading_ || !ac_) return;
  reading_ = true;
  socket_.async_wait(wait_type::wait_read, [self = shared_from_this()](const boost::system::error_code& ec) {
    self->reading_ = false;
    if (ec == asio::error::operation_aborted || !self->ac_ || !self->want_read_) return;
    // On another error hiredis's read finds the socket's error itself.
    redisAsyncHandleRead(self->ac_);  // may free the context (cleanup runs)
    if (self->ac_ && self->want_read_) self->arm_read();
  });
}

void AsioAdapter::arm_write() {
  if (writing_ || !ac_) return;
  writing_ = true;
  socket_.async_wait(wait_type::wait_write, [self = shared_from_this()](const boost::system::error_code& ec) {
    self->writing_ = false;
    if (ec == asio::error::operation_aborted || !self->ac_ || !self->want_write_) return;
    redisAsyncHandleWrite(self->ac_);  // also completes a pending connect
    if (self->ac_ && self->want_write_) self->arm_write();
  });
}

}  // namespace nudge::plugins::redis
