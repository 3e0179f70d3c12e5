#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.hpp"

int main(int argc, char** argv) {
  try {
    return nudge::runtime::run_cli(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    // Anything reaching here is a bug; say so instead of aborting silently.
    std::cerr << "nudge: internal error: " << e.what() << "\n";
    return 70;
  }
}
