#pragma once

#include <cstddef>
#include <cstdint>

namespace nudge::bench {

/// Which room connection `i` joins: i mod rooms, so the senders (the first
/// connections) spread over the rooms and rooms differ in size by one at most.
inline std::uint32_t room_of(std::uint32_t i, std::uint32_t rooms) { return i % rooms; }

/// Which URL (server instance) connection `i` uses. The k-th member of a room
/// (connection room + k·rooms) goes to instance (room + k) mod instances, so
/// every room with at least as many members as instances spans them all, and
/// the instances get their share of connections whatever the number of rooms.
/// (instance = i mod instances put each room on one instance whenever the
/// rooms were a multiple of the instances: cross-instance fanout went unmeasured.)
inline std::size_t instance_of(std::uint32_t i, std::uint32_t rooms, std::size_t instances) {
  return (i % rooms + i / rooms) % instances;
}

}  // namespace nudge::bench
