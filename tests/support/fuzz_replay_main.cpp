// The replay test of a fuzz target (cmake/NudgeSanitize.cmake,
// nudge_add_fuzz_target): every file of the target's seed corpus goes through
// the same LLVMFuzzerTestOneInput the fuzzer runs, in an ordinary GoogleTest
// binary, so a crash once found (and added to the corpus) fails CI again if it
// comes back, without clang or libFuzzer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Optional in a target, as in libFuzzer.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> corpus_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(NUDGE_FUZZ_CORPUS))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzReplay, EveryCorpusFileRunsCleanly) {
  const auto files = corpus_files();
  ASSERT_FALSE(files.empty()) << "no seed files in " << NUDGE_FUZZ_CORPUS;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << file;
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Said before the call: if the input crashes the process, the log names it.
    std::cerr << "replaying " << file.lexically_relative(NUDGE_FUZZ_CORPUS).string() << " (" << bytes.size()
              << " bytes)\n";
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0) << file;
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  return RUN_ALL_TESTS();
}
