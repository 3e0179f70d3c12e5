#pragma once

#include <cstdint>
#include <string>

#include "nudge/sdk/config.hpp"

namespace nudge::plugins::sqlite {

struct SqliteConfig {
  std::string path;
  std::string table;
  std::string synchronous;
  std::int64_t busy_timeout_ms = 5000;

  static ConfigSchema schema();
  static SqliteConfig from(const Config& config);
};

}  // namespace nudge::plugins::sqlite
