#include "presence_roster.hpp"

namespace nudge::plugins::nats {

PresenceRoster::PresenceRoster(Settings settings, Publish publish, Report report)
    : settings_(std::move(settings)), publish_(std::move(publish)), report_(std::move(report)) {}

bool PresenceRoster::keeps(std::string_view room) const { return interest_.contains(room) || own_.contains(room); }

void PresenceRoster::join(std::string_view room, const PresenceMember& member) {
  auto it = own_.find(room);
  if (it == own_.end()) it = own_.emplace(std::string(room), Own{}).first;
  if (!it->second.try_emplace(member.connection, member.user).second) return;
  publish_(it->first, encode_presence_frame({PresenceFrame::Kind::join, it->first, member.instance, {member}, 1}));
  report_(it->first, PresenceEvent{PresenceChange::join, member});
}

void PresenceRoster::leave(std::string_view room, const PresenceMember& member) {
  auto it = own_.find(room);
  if (it == own_.end()) return;
  auto found = it->second.find(member.connection);
  if (found == it->second.end()) return;
  const PresenceMember left = own_member(found->first, found->second);
  it->second.erase(found);
  const std::string name = it->first;
  if (it->second.empty()) own_.erase(it);
  publish_(name, encode_presence_frame({PresenceFrame::Kind::leave, name, left.instance, {left}, 0}));
  report_(name, PresenceEvent{PresenceChange::leave, left});
}

void PresenceRoster::leave_all() {
  while (!own_.empty()) {
    auto& [room, members] = *own_.begin();
    leave(std::string(room), own_member(members.begin()->first, members.begin()->second));
  }
}

PresenceList PresenceRoster::list(std::string_view room) const {
  PresenceList out;
  auto add = [&](const Members& members, std::uint64_t total) {
    out.total += static_cast<std::size_t>(total);
    for (auto it = members.begin(); it != members.end() && out.members.size() < settings_.max_per_room; ++it)
      out.members.push_back(it->second);
  };
  if (auto it = own_.find(room); it != own_.end()) {
    out.total += it->second.size();
    for (auto m = it->second.begin(); m != it->second.end() && out.members.size() < settings_.max_per_room; ++m)
      out.members.push_back(own_member(m->first, m->second));
  }
  if (auto it = rooms_.find(room); it != rooms_.end())
    for (const auto& [instance, entry] : it->second) add(entry.members, entry.total);
  return out;
}

void PresenceRoster::set_interest(std::string_view room, bool interested) {
  if (!interested) {
    interest_.erase(std::string(room));
    // Not watched any more: what others announced is forgotten, silently.
    if (auto it = rooms_.find(room); it != rooms_.end()) rooms_.erase(it);
    return;
  }
  if (!interest_.emplace(room).second) return;
  // Heard for the first time, this instance is answered with the others'
  // snapshots (on_frame), so it learns the room at once.
  snapshot(std::string(room));
}

void PresenceRoster::snapshot(const std::string& room) {
  PresenceFrame f{PresenceFrame::Kind::snapshot, room, settings_.instance, {}, 0};
  if (auto it = own_.find(room); it != own_.end()) {
    f.total = it->second.size();
    for (auto m = it->second.begin(); m != it->second.end() && f.members.size() < settings_.max_per_room; ++m)
      f.members.push_back(own_member(m->first, m->second));
  }
  publish_(room, encode_presence_frame(f));
}

void PresenceRoster::on_frame(const PresenceFrame& frame, Clock::time_point now) {
  // This instance's own announcements come back from the bus: already known.
  if (frame.instance == settings_.instance || !keeps(frame.room)) return;
  if (frame.kind == PresenceFrame::Kind::snapshot && frame.total == 0) {
    // No member there: the instance takes no entry, so a room where no one
    // joined keeps nothing and costs nothing at a tick, however many
    // instances have clients in it.
    auto room = rooms_.find(frame.room);
    auto entry = room == rooms_.end() ? Room::iterator{} : room->second.find(frame.instance);
    if (room == rooms_.end() || entry == room->second.end()) {
      if (own_.contains(frame.room)) snapshot(frame.room);  // a newcomer: answered at once
      return;
    }
    forget(frame.room, entry, room->second);  // what it listed left
    if (room->second.empty()) rooms_.erase(room);
    return;
  }
  Room& instances = rooms_[frame.room];
  auto [it, first_heard] = instances.try_emplace(frame.instance);
  Entry& entry = it->second;
  entry.heard = now;
  switch (frame.kind) {
    case PresenceFrame::Kind::join: {
      const PresenceMember& m = frame.members.front();
      if (entry.members.contains(m.connection)) break;
      if (entry.members.size() < settings_.max_per_room) entry.members.emplace(m.connection, m);
      ++entry.total;
      report_(frame.room, PresenceEvent{PresenceChange::join, m});
      break;
    }
    case PresenceFrame::Kind::leave: {
      const PresenceMember& m = frame.members.front();
      if (auto found = entry.members.find(m.connection); found != entry.members.end()) {
        entry.members.erase(found);
      } else if (entry.total <= entry.members.size()) {
        break;  // not a member this instance knows of, listed or counted
      }
      if (entry.total > 0) --entry.total;
      report_(frame.room, PresenceEvent{PresenceChange::leave, m});
      break;
    }
    case PresenceFrame::Kind::snapshot: {
      Members now_members;
      for (const auto& m : frame.members)
        if (now_members.size() < settings_.max_per_room) now_members.emplace(m.connection, m);
      // A complete snapshot is the truth: what it lacks left (a leave was
      // lost, or the instance restarted). A bounded one cannot tell.
      const bool complete = frame.total == frame.members.size();
      if (complete)
        for (const auto& [connection, m] : entry.members)
          if (!now_members.contains(connection)) report_(frame.room, PresenceEvent{PresenceChange::leave, m});
      for (const auto& [connection, m] : now_members)
        if (!entry.members.contains(connection)) report_(frame.room, PresenceEvent{PresenceChange::join, m});
      entry.members = std::move(now_members);
      entry.total = frame.total;
      break;
    }
  }
  if (first_heard && own_.contains(frame.room)) snapshot(frame.room);
}

void PresenceRoster::forget(const std::string& room, Room::iterator entry, Room& instances) {
  for (const auto& [connection, m] : entry->second.members) report_(room, PresenceEvent{PresenceChange::leave, m});
  instances.erase(entry);
}

void PresenceRoster::tick(bool snapshots, Clock::time_point now) {
  if (snapshots)
    for (const auto& [room, members] : own_) snapshot(room);
  for (auto room = rooms_.begin(); room != rooms_.end();) {
    for (auto entry = room->second.begin(); entry != room->second.end();) {
      auto next = std::next(entry);
      if (now - entry->second.heard > settings_.ttl) forget(room->first, entry, room->second);
      entry = next;
    }
    room = room->second.empty() ? rooms_.erase(room) : std::next(room);
  }
}

}  // namespace nudge::plugins::nats
