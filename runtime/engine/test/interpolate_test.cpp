#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "engine/interpolate.hpp"

namespace nudge::runtime {
namespace {

VariableLookup vars(std::map<std::string, std::string, std::less<>> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

std::string expand(std::string_view text, const VariableLookup& lookup) {
  std::string out;
  std::string error;
  EXPECT_TRUE(interpolate(text, lookup, out, error)) << error;
  return out;
}

TEST(Interpolate, ReplacesSetVariablesAndDefaults) {
  const auto lookup = vars({{"HOST", "db.local"}, {"EMPTY", ""}});
  EXPECT_EQ(expand("postgresql://${HOST}:5432", lookup), "postgresql://db.local:5432");
  EXPECT_EQ(expand("${PORT:-5432}", lookup), "5432");
  EXPECT_EQ(expand("${HOST:-other}", lookup), "db.local");
  EXPECT_EQ(expand("${EMPTY:-fallback}", lookup), "fallback");  // as a shell does
  EXPECT_EQ(expand("${PORT:-}", lookup), "");
  EXPECT_EQ(expand("a ${HOST} b ${HOST}", lookup), "a db.local b db.local");
}

TEST(Interpolate, LeavesPlainTextAndEscapesAlone) {
  const auto lookup = vars({});
  EXPECT_EQ(expand("no variables", lookup), "no variables");
  EXPECT_EQ(expand("costs $5", lookup), "costs $5");
  EXPECT_EQ(expand("literal $${HOST}", lookup), "literal ${HOST}");
}

TEST(Interpolate, UnsetWithoutDefaultIsAnErrorNamingTheVariable) {
  std::string out;
  std::string error;
  EXPECT_FALSE(interpolate("${DATABASE_URL}", vars({}), out, error));
  EXPECT_NE(error.find("'DATABASE_URL' is not set"), std::string::npos) << error;
  EXPECT_NE(error.find("${DATABASE_URL:-default}"), std::string::npos) << error;
}

TEST(Interpolate, MalformedReferencesAreErrors) {
  std::string out;
  std::string error;
  EXPECT_FALSE(interpolate("${UNCLOSED", vars({}), out, error));
  EXPECT_NE(error.find("unclosed"), std::string::npos);
  EXPECT_FALSE(interpolate("${1BAD}", vars({}), out, error));
  EXPECT_NE(error.find("invalid variable name"), std::string::npos);
}

}  // namespace
}  // namespace nudge::runtime
