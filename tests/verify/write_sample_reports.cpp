// Writes every sample report as DIR/NAME.json and DIR/NAME.junit.xml, for validate_reports.py.
#include <cstdio>
#include <exception>
#include <filesystem>

#include "tests/verify/sample_reports.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    std::filesystem::remove_all(dir);
    for (const auto& [name, report] : dplr::testing::sample_reports()) {
      dplr::write_report(dir / (name + ".json"), report);
      dplr::write_junit(dir / (name + ".junit.xml"), report);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_sample_reports: %s\n", e.what());
    return 1;
  }
  return 0;
}
