// The close handshake's states (ws_connection.hpp): a close is queued once,
// and only a drained queue moves a queued close to sent.
#include <gtest/gtest.h>

#include "ws_connection.hpp"

namespace nudge::plugins::websocket {
namespace {

constexpr ConnectionState kAll[] = {ConnectionState::open, ConnectionState::closing_after_queue,
                                    ConnectionState::close_queued, ConnectionState::close_sent,
                                    ConnectionState::closed};

TEST(ConnectionState, ACloseIsQueuedOnlyBeforeTheCloseFrameIs) {
  EXPECT_TRUE(may_queue_close(ConnectionState::open));
  EXPECT_TRUE(may_queue_close(ConnectionState::closing_after_queue));
  EXPECT_FALSE(may_queue_close(ConnectionState::close_queued));
  EXPECT_FALSE(may_queue_close(ConnectionState::close_sent));
  EXPECT_FALSE(may_queue_close(ConnectionState::closed));
}

TEST(ConnectionState, ADrainedQueueSendsAQueuedCloseAndMovesNothingElse) {
  EXPECT_EQ(after_queue_drained(ConnectionState::close_queued), ConnectionState::close_sent);
  for (const auto state : kAll) {
    if (state == ConnectionState::close_queued) continue;
    EXPECT_EQ(after_queue_drained(state), state) << static_cast<int>(state);
  }
}

TEST(ConnectionState, StatesOnlyMoveForward) {
  for (const auto state : kAll) EXPECT_GE(after_queue_drained(state), state) << static_cast<int>(state);
}

}  // namespace
}  // namespace nudge::plugins::websocket
