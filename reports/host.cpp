// Which machine a report was made on.
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "reports/report.hpp"

namespace dplr {
namespace {

std::string read_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "unknown";
  return name;
}

// The first "model name" of /proc/cpuinfo (x86); ARM kernels may only give "Hardware" or nothing.
std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string fallback;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    if (key == "model name" && !value.empty()) return value;
    if (key == "Hardware" && fallback.empty()) fallback = value;
  }
  return fallback.empty() ? "unknown" : fallback;
}

}  // namespace

HostInfo HostInfo::current(std::optional<std::string> gpu) {
  HostInfo host;
  host.hostname = read_hostname();
  host.cpu_model = read_cpu_model();
  host.cpu_cores = static_cast<int>(std::thread::hardware_concurrency());
  host.gpu = std::move(gpu);
  return host;
}

}  // namespace dplr
