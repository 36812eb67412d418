#include "cli/progress.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "core/parallel.hpp"

namespace dplr::cli {
namespace {

std::atomic<std::int64_t> pairs_done{0}, pairs_total{0};

// Seconds between lines: redrawn in place on a terminal, printed anew in a log.
constexpr auto kTerminalPeriod = std::chrono::milliseconds(500);
constexpr auto kLogPeriod = std::chrono::seconds(5);

}  // namespace

ProgressReporter::ProgressReporter(bool terminal) : terminal_(terminal) {
  progress_hook() = [](std::int64_t finished, std::int64_t total) {
    pairs_done = finished;
    pairs_total = total;
  };
  thread_ = std::thread([this] {
    const auto period = terminal_ ? std::chrono::duration_cast<std::chrono::milliseconds>(kTerminalPeriod)
                                  : std::chrono::duration_cast<std::chrono::milliseconds>(kLogPeriod);
    auto next = std::chrono::steady_clock::now() + period;
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (std::chrono::steady_clock::now() < next) continue;
      next += period;
      report();
    }
  });
}

ProgressReporter::~ProgressReporter() {
  stop_ = true;
  thread_.join();
  progress_hook() = nullptr;
  if (drew_ && terminal_) fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
}

void ProgressReporter::report() {
  const std::int64_t done = token_progress().done.load(std::memory_order_relaxed);
  const std::int64_t total = token_progress().total.load(std::memory_order_relaxed);
  const std::int64_t pairs = pairs_done, all_pairs = pairs_total;
  if (done == last_done_ || (total == 0 && all_pairs == 0)) return;  // nothing new to say
  last_done_ = done;
  std::fflush(stdout);  // what the command printed so far comes first, also where stdout is a pipe
  std::string line = "progress:";
  if (total > 0)
    line += fmt::format(" {} / {} token steps ({:.0f}%)", done, total, 100.0 * static_cast<double>(done) / total);
  if (all_pairs > 0) line += fmt::format("{} {} / {} (sequence, head) pairs", total > 0 ? "," : "", pairs, all_pairs);
  if (terminal_) fmt::print(stderr, "\r\033[K  {}", line);
  else fmt::print(stderr, "  {}\n", line);
  std::fflush(stderr);
  drew_ = true;
}

}  // namespace dplr::cli
