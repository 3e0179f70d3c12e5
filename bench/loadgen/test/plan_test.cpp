// Where connections go: rooms and server instances chosen independently.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "layout.hpp"

namespace nudge::bench {
namespace {

struct Shape {
  std::uint32_t connections, rooms;
  std::size_t instances;
};

TEST(Layout, EveryRoomWithEnoughMembersSpansEveryInstance) {
  // Even room counts were the blind spot of instance = i mod instances.
  for (const Shape s : {Shape{5000, 500, 2}, Shape{1000, 99, 2}, Shape{1000, 100, 2}, Shape{40, 4, 2},
                        Shape{600, 50, 3}, Shape{10, 1, 2}}) {
    std::vector<std::set<std::size_t>> seen(s.rooms);
    for (std::uint32_t i = 0; i < s.connections; ++i)
      seen[room_of(i, s.rooms)].insert(instance_of(i, s.rooms, s.instances));
    for (std::uint32_t r = 0; r < s.rooms; ++r) {
      EXPECT_EQ(seen[r].size(), s.instances) << s.connections << " connections, " << s.rooms << " rooms, room " << r;
    }
  }
}

TEST(Layout, InstancesShareTheConnectionsEvenWithRoomsOfOne) {
  for (const Shape s : {Shape{1000, 1000, 2}, Shape{1000, 1, 2}, Shape{5000, 500, 2}, Shape{999, 333, 3}}) {
    std::vector<std::uint32_t> per(s.instances, 0);
    for (std::uint32_t i = 0; i < s.connections; ++i) ++per[instance_of(i, s.rooms, s.instances)];
    for (auto n : per) EXPECT_NEAR(n, s.connections / static_cast<double>(s.instances), s.rooms / 2.0 + 1);
  }
}

TEST(Layout, RoomsDifferInSizeByOneAtMost) {
  std::vector<std::uint32_t> size(7, 0);
  for (std::uint32_t i = 0; i < 100; ++i) ++size[room_of(i, 7)];
  for (auto n : size) EXPECT_TRUE(n == 14 || n == 15);
}

}  // namespace
}  // namespace nudge::bench
