#include "discard_server.hpp"

#include <deque>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "clock.hpp"

namespace nudge::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;

using Frame = std::shared_ptr<const std::string>;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::size_t kMaxQueue = 100'000;

std::string_view member_string(const rapidjson::Value& v, const char* key) {
  if (!v.IsObject()) return {};
  auto it = v.FindMember(key);
  if (it == v.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

void put(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

class Session;

}  // namespace

class DiscardServer::Impl : public std::enable_shared_from_this<DiscardServer::Impl> {
 public:
  Impl(asio::io_context& ioc, const tcp::endpoint& at) : ioc_(ioc), acceptor_(ioc.get_executor(), at) {}

  void do_accept();
  void stop();

  void join(Session* s, const std::string& room) { rooms_[room].insert(s); }
  void leave(Session* s, const std::string& room) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    it->second.erase(s);
    if (it->second.empty()) rooms_.erase(it);
  }
  void broadcast(const std::string& room, const Frame& frame);
  void forget(Session* s) { sessions_.erase(s); }

  asio::io_context& ioc_;
  Acceptor acceptor_;
  std::unordered_map<std::string, std::unordered_set<Session*>> rooms_;
  std::unordered_set<Session*> sessions_;
  std::uint64_t next_id_ = 1;
  bool stopped_ = false;
  Counters counters_;
};

namespace {

/// One client: reads its HTTP upgrade to tell the protocol from the path,
/// then serves frames until it goes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<DiscardServer::Impl> server, Socket socket)
      : server_(std::move(server)), ws_(std::move(socket)), id_(server_->next_id_++) {}

  void start() {
    server_->sessions_.insert(this);
    http::async_read(ws_.next_layer(), buffer_, request_,
                     [self = shared_from_this()](error_code ec, std::size_t) { self->on_request(ec); });
  }

  void close() {
    error_code ignored;
    ws_.next_layer().close(ignored);
  }

  void send(const Frame& frame) {
    if (closed_) return;
    if (out_.size() >= kMaxQueue) {
      ++server_->counters_.slow_clients_dropped;
      finish();
      return;
    }
    out_.push_back(frame);
    ++server_->counters_.frames_out;
    if (out_.size() == 1) do_write();
  }

 private:
  void on_request(error_code ec) {
    if (ec || !websocket::is_upgrade(request_)) return finish();
    socketio_ = std::string_view(request_.target()).starts_with("/socket.io/");
    error_code ignored;
    ws_.next_layer().set_option(tcp::no_delay(true), ignored);
    ws_.read_message_max(64u << 20);
    ws_.auto_fragment(false);
    ws_.text(true);
    ws_.async_accept(request_, [self = shared_from_this()](error_code e) { self->on_accept(e); });
  }

  void on_accept(error_code ec) {
    if (ec) return finish();
    ++server_->counters_.connections;
    buffer_.clear();
    if (socketio_) {
      send(std::make_shared<const std::string>(
          R"(0{"sid":"d)" + std::to_string(id_) +
          R"(","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000000})"));
    }
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, [self = shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(error_code ec, std::size_t n) {
    if (ec) return finish();
    ++server_->counters_.frames_in;
    const auto data = buffer_.cdata();
    std::string_view frame(static_cast<const char*>(data.data()), n);
    if (socketio_) {
      on_socketio(frame);
    } else {
      on_nudge(frame);
    }
    buffer_.consume(n);
    if (!closed_) do_read();
  }

  // --- Nudge -----------------------------------------------------------------

  void on_nudge(std::string_view frame) {
    rapidjson::Document doc;
    doc.Parse(frame.data(), frame.size());
    if (doc.HasParseError() || !doc.IsObject()) return error({}, "bad_json", "not a JSON object");
    const std::string_view type = member_string(doc, "type");
    const std::string_view ref = member_string(doc, "ref");
    const std::string room(member_string(doc, "room"));
    if (type == "hello") {
      name_ = std::string(member_string(doc, "name"));
    } else if (type == "join") {
      if (room.empty()) return error(ref, "bad_request", "missing string field 'room'");
      if (rooms_.insert(room).second) server_->join(this, room);
    } else if (type == "leave") {
      if (rooms_.erase(room)) server_->leave(this, room);
    } else if (type == "send") {
      if (!rooms_.contains(room)) return error(ref, "not_joined", "not a member of room " + room);
      const std::string id = "d-" + std::to_string(server_->next_id_++);
      rapidjson::StringBuffer b;
      Writer w(b);
      w.StartObject();
      put(w, "type", "message");
      put(w, "id", id);
      put(w, "room", room);
      put(w, "sender", name_);
      put(w, "text", member_string(doc, "text"));
      w.Key("ts");
      w.Int64(now_ns() / 1'000'000);
      w.EndObject();
      server_->broadcast(room, std::make_shared<const std::string>(b.GetString(), b.GetSize()));
      if (!ref.empty()) {
        rapidjson::StringBuffer a;
        Writer aw(a);
        aw.StartObject();
        put(aw, "type", "ack");
        put(aw, "ref", ref);
        put(aw, "id", id);
        aw.EndObject();
        send(std::make_shared<const std::string>(a.GetString(), a.GetSize()));
      }
    } else {
      error(ref, "unknown_type", "unknown type");
    }
  }

  void error(std::string_view ref, std::string_view code, std::string_view message) {
    rapidjson::StringBuffer b;
    Writer w(b);
    w.StartObject();
    put(w, "type", "error");
    if (!ref.empty()) put(w, "ref", ref);
    put(w, "code", code);
    put(w, "message", message);
    w.EndObject();
    send(std::make_shared<const std::string>(b.GetString(), b.GetSize()));
  }

  // --- Socket.IO -------------------------------------------------------------

  void on_socketio(std::string_view frame) {
    if (frame == "2") return send(std::make_shared<const std::string>("3"));
    if (!frame.starts_with('4') || frame.size() < 2) return;  // pong, noop, or not for us
    switch (frame[1]) {
      case '0':  // namespace connect: into "general", as Nudge's Socket.IO mode
        if (rooms_.insert("general").second) server_->join(this, "general");
        return send(std::make_shared<const std::string>(R"(40{"sid":"s)" + std::to_string(id_) + R"("})"));
      case '1':
        return finish();
      case '2':
        break;
      default:
        return;
    }
    std::string_view rest = frame.substr(2);
    const auto digits = std::min(rest.find_first_not_of("0123456789"), rest.size());
    const std::string_view ack_id = rest.substr(0, digits);
    rest.remove_prefix(digits);
    rapidjson::Document doc;
    doc.Parse(rest.data(), rest.size());
    if (doc.HasParseError() || !doc.IsArray() || doc.Empty() || !doc[0].IsString()) return;
    const std::string_view event(doc[0].GetString(), doc[0].GetStringLength());
    if (event == "join" && doc.Size() >= 2 && doc[1].IsString()) {
      for (const auto& r : rooms_) server_->leave(this, r);
      rooms_.clear();
      const std::string room(doc[1].GetString(), doc[1].GetStringLength());
      rooms_.insert(room);
      server_->join(this, room);
    } else if (event == "event:message" && doc.Size() >= 2) {
      // The original server's shape: io.emit("message", JSON.stringify({message})).
      rapidjson::StringBuffer inner;
      Writer iw(inner);
      iw.StartObject();
      put(iw, "message", member_string(doc[1], "message"));
      iw.EndObject();
      rapidjson::StringBuffer outer;
      outer.Put('4');
      outer.Put('2');
      Writer ow(outer);
      ow.StartArray();
      ow.String("message");
      ow.String(inner.GetString(), static_cast<rapidjson::SizeType>(inner.GetSize()));
      ow.EndArray();
      const auto out = std::make_shared<const std::string>(outer.GetString(), outer.GetSize());
      const std::vector<std::string> rooms(rooms_.begin(), rooms_.end());  // a send may drop us
      for (const auto& r : rooms) server_->broadcast(r, out);
    }
    if (!ack_id.empty()) send(std::make_shared<const std::string>("43" + std::string(ack_id) + "[]"));
  }

  // --- writing and ending ----------------------------------------------------

  void do_write() {
    ws_.async_write(asio::buffer(*out_.front()),
                    [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    if (ec) return finish();
    out_.pop_front();
    if (!out_.empty() && !closed_) do_write();
  }

  void finish() {
    if (closed_) return;
    closed_ = true;
    for (const auto& r : rooms_) server_->leave(this, r);
    rooms_.clear();
    server_->forget(this);
    close();
  }

  std::shared_ptr<DiscardServer::Impl> server_;
  websocket::stream<Socket> ws_;
  beast::flat_buffer buffer_;
  http::request<http::empty_body> request_;
  std::uint64_t id_;
  bool socketio_ = false;
  bool closed_ = false;
  std::string name_ = "anonymous";
  std::set<std::string> rooms_;
  std::deque<Frame> out_;
};

}  // namespace

void DiscardServer::Impl::do_accept() {
  acceptor_.async_accept([self = shared_from_this()](error_code ec, Socket socket) {
    if (self->stopped_) return;
    if (!ec) std::make_shared<Session>(self, std::move(socket))->start();
    self->do_accept();
  });
}

void DiscardServer::Impl::broadcast(const std::string& room, const Frame& frame) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  // A member dropped for a full queue leaves the set: iterate over a copy.
  std::vector<Session*> members(it->second.begin(), it->second.end());
  for (Session* s : members) s->send(frame);
}

void DiscardServer::Impl::stop() {
  stopped_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  std::vector<Session*> all(sessions_.begin(), sessions_.end());
  for (Session* s : all) s->close();
}

DiscardServer::DiscardServer(asio::io_context& ioc, const tcp::endpoint& at) : impl_(std::make_shared<Impl>(ioc, at)) {}

DiscardServer::~DiscardServer() = default;

std::uint16_t DiscardServer::port() const { return impl_->acceptor_.local_endpoint().port(); }

void DiscardServer::start() {
  asio::post(impl_->ioc_, [impl = impl_] { impl->do_accept(); });
}

void DiscardServer::stop() {
  asio::post(impl_->ioc_, [impl = impl_] { impl->stop(); });
}

DiscardServer::Counters DiscardServer::counters() const { return impl_->counters_; }

}  // namespace nudge::bench
