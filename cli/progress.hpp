// The progress line of long commands on stderr: tokens of the recurrence (core/parallel.hpp's
// token_progress) and (sequence, head) pairs finished. On a terminal it is redrawn in place twice a second;
// otherwise (a log, a pipe) a line is printed every few seconds, so a long run is never silent.
#pragma once
#include <atomic>
#include <cstdint>
#include <thread>

namespace dplr::cli {

class ProgressReporter {
 public:
  explicit ProgressReporter(bool terminal);
  ~ProgressReporter();  // stops the thread and clears the line it drew
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

 private:
  void report();

  bool terminal_;
  std::atomic<bool> stop_{false};
  std::int64_t last_done_ = -1;
  bool drew_ = false;
  std::thread thread_;
};

}  // namespace dplr::cli
