#include "peer_limits.hpp"

#include <array>

namespace nudge::plugins::websocket {

std::string peer_key(const boost::asio::ip::address& address) {
  if (address.is_v4()) return address.to_string();
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
  auto bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

PeerTable::Entry* PeerTable::find_or_add(const std::string& peer, Clock::time_point now) {
  if (auto it = entries_.find(peer); it != entries_.end()) return &it->second;
  // Full: sweep once for entries that can go before refusing anyone.
  if (entries_.size() >= limits_.max_peers) forget_idle(now);
  if (entries_.size() >= limits_.max_peers) return nullptr;
  return &entries_.try_emplace(peer, limits_, now).first->second;
}

bool PeerTable::idle(const Entry& entry, Clock::time_point now) const noexcept {
  return entry.sockets == 0 && entry.clients == 0 && entry.history_bytes == 0 && entry.rooms == 0 &&
         entry.connects.full(now) && entry.messages.full(now) && entry.requests.full(now);
}

PeerTable::Refusal PeerTable::open_socket(const std::string& peer, Clock::time_point now) {
  Entry* entry = find_or_add(peer, now);
  if (!entry) return Refusal::table_full;
  if (limits_.sockets_per_peer > 0 && entry->sockets >= limits_.sockets_per_peer) return Refusal::too_many_sockets;
  if (!entry->connects.allow(now)) return Refusal::connecting_too_fast;
  ++entry->sockets;
  return Refusal::none;
}

void PeerTable::close_socket(const std::string& peer) noexcept {
  if (auto it = entries_.find(peer); it != entries_.end() && it->second.sockets > 0) --it->second.sockets;
}

bool PeerTable::open_client(const std::string& peer, Clock::time_point now, bool as_connect) {
  Entry* entry = find_or_add(peer, now);
  if (!entry) return false;
  if (limits_.clients_per_peer > 0 && entry->clients >= limits_.clients_per_peer) return false;
  if (as_connect && !entry->connects.allow(now)) return false;
  ++entry->clients;
  return true;
}

void PeerTable::close_client(const std::string& peer) noexcept {
  if (auto it = entries_.find(peer); it != entries_.end() && it->second.clients > 0) --it->second.clients;
}

bool PeerTable::allow_message(const std::string& peer, Clock::time_point now) {
  if (limits_.messages_per_second <= 0) return true;
  Entry* entry = find_or_add(peer, now);
  return entry && entry->messages.allow(now);
}

bool PeerTable::allow_request(const std::string& peer, Clock::time_point now) {
  if (limits_.requests_per_second <= 0) return true;
  Entry* entry = find_or_add(peer, now);
  return entry && entry->requests.allow(now);
}

bool PeerTable::join_room(const std::string& peer, std::size_t most, Clock::time_point now) {
  Entry* entry = find_or_add(peer, now);
  if (!entry || (most > 0 && entry->rooms >= most)) return false;
  ++entry->rooms;
  return true;
}

void PeerTable::leave_room(const std::string& peer) noexcept {
  if (auto it = entries_.find(peer); it != entries_.end() && it->second.rooms > 0) --it->second.rooms;
}

std::size_t PeerTable::rooms(const std::string& peer) const noexcept {
  const auto it = entries_.find(peer);
  return it == entries_.end() ? 0 : it->second.rooms;
}

void PeerTable::add_history(const std::string& peer, std::size_t bytes, Clock::time_point now) {
  // A peer with history always has an entry: it holds a client, so it was
  // made when the client was counted, and a full table cannot refuse it.
  if (Entry* entry = find_or_add(peer, now)) entry->history_bytes += bytes;
}

void PeerTable::release_history(const std::string& peer, std::size_t bytes) noexcept {
  if (auto it = entries_.find(peer); it != entries_.end())
    it->second.history_bytes -= std::min(it->second.history_bytes, bytes);
}

std::size_t PeerTable::history(const std::string& peer) const noexcept {
  const auto it = entries_.find(peer);
  return it == entries_.end() ? 0 : it->second.history_bytes;
}

void PeerTable::forget_idle(Clock::time_point now) {
  std::erase_if(entries_, [&](const auto& item) { return idle(item.second, now); });
}

void PeerTable::set_limits(const Limits& limits, Clock::time_point now) {
  limits_ = limits;
  for (auto& [peer, entry] : entries_) {
    entry.connects.reconfigure(limits.connects_per_second, limits.connect_burst, now);
    entry.messages.reconfigure(limits.messages_per_second, limits.message_burst, now);
    entry.requests.reconfigure(limits.requests_per_second, limits.request_burst, now);
  }
}

std::size_t PeerTable::sockets(const std::string& peer) const noexcept {
  const auto it = entries_.find(peer);
  return it == entries_.end() ? 0 : it->second.sockets;
}

std::size_t PeerTable::clients(const std::string& peer) const noexcept {
  const auto it = entries_.find(peer);
  return it == entries_.end() ? 0 : it->second.clients;
}

}  // namespace nudge::plugins::websocket
