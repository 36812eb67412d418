// A minimal parallel-for over independent work items (the reference's (sequence, head) pairs, a file's tensors):
// items are taken from an atomic counter by `threads` workers; the exception of the lowest item that threw is
// rethrown. That one does not depend on the timing: items are handed out in order and run to their end, so every
// item below it ran, and none of them threw.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dplr {

inline int resolve_thread_count(int requested, std::int64_t items) {
  int threads = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, items)));
}

// Called after each finished item with (finished, total), from worker threads under a lock; the CLI sets
// it to show progress on stderr. Empty by default.
inline std::function<void(std::int64_t, std::int64_t)>& progress_hook() {
  static std::function<void(std::int64_t, std::int64_t)> hook;
  return hook;
}

// Steps of the recurrence taken and to take (a token forward, and again backward, each count one), summed
// over every reference run of the process, so progress shows within one long (sequence, head) pair. Workers
// add with relaxed atomics; the CLI's progress line reads them from its own thread.
struct TokenProgress {
  std::atomic<std::int64_t> done{0}, total{0};
};
inline TokenProgress& token_progress() {
  static TokenProgress progress;
  return progress;
}

// Progress::Pairs: each finished item counts as a (sequence, head) pair on progress_hook; None: it does not (work
// that is not the reference's pairs, such as the comparison's tensors).
enum class Progress { Pairs, None };

// As parallel_for below, with state per worker: `make()` runs once in each worker and body(state, i) for each
// of its items (the reference reuses one pair's stored states for the next instead of allocating them anew).
template <class Make, class Body>
void parallel_for_with(std::int64_t items, int requested_threads, Make&& make, Body&& body,
                       Progress progress = Progress::Pairs) {
  const int threads = resolve_thread_count(requested_threads, items);
  std::atomic<std::int64_t> next{0};
  std::exception_ptr failure;
  std::int64_t failed_item = items;  // the lowest item that threw
  std::mutex failure_mutex;
  std::atomic<std::int64_t> finished{0};
  static const std::function<void(std::int64_t, std::int64_t)> no_hook;
  const auto& hook = progress == Progress::Pairs ? progress_hook() : no_hook;
  auto worker = [&] {
    auto state = make();
    for (std::int64_t i; (i = next.fetch_add(1)) < items;) {
      try {
        body(state, i);
        if (hook) {
          std::lock_guard lock(failure_mutex);
          hook(++finished, items);
        }
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (i < failed_item) failed_item = i, failure = std::current_exception();
        next = items;  // stop handing out work
      }
    }
  };
  if (threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
    for (auto& thread : pool) thread.join();
  }
  if (failure) std::rethrow_exception(failure);
}

template <class Body>
void parallel_for(std::int64_t items, int requested_threads, Body&& body, Progress progress = Progress::Pairs) {
  parallel_for_with(items, requested_threads, [] { return 0; }, [&](int&, std::int64_t i) { body(i); }, progress);
}

}  // namespace dplr
