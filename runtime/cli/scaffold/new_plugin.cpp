// `nudge new plugin NAME --kind KIND [--dir DIR]`.
#include <exception>
#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/scaffold/scaffold.hpp"

namespace nudge::runtime {

int cmd_new_plugin(const CommandLine& cl) {
  ScaffoldRequest request{cl.subject, cl.kind, std::filesystem::path(cl.dir.empty() ? cl.subject : cl.dir)};
  if (const auto problems = scaffold_problems(request); !problems.empty()) {
    for (const auto& p : problems) std::cerr << "nudge: " << p << "\n";
    return 2;
  }
  try {
    const auto files = write_plugin_scaffold(request);
    std::cout << "wrote the " << request.kind << " plugin '" << request.name << "' in " << request.dir.string()
              << "/:\n";
    for (const auto& f : files) std::cout << "  " << f.string() << "\n";
    std::cout << "build and test it against the installed SDK:\n"
              << "  cmake -S " << request.dir.string() << " -B " << request.dir.string() << "/build"
              << " && cmake --build " << request.dir.string() << "/build"
              << " && ctest --test-dir " << request.dir.string() << "/build\n";
  } catch (const std::exception& e) {
    std::cerr << "nudge: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace nudge::runtime
