// A minimal parallel-for over independent work items (the reference's (sequence, head) pairs):
// items are taken from an atomic counter by `threads` workers; the first exception is rethrown.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dplr {

inline int resolve_thread_count(int requested, std::int64_t items) {
  int threads = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, items)));
}

template <class Body>
void parallel_for(std::int64_t items, int requested_threads, Body&& body) {
  const int threads = resolve_thread_count(requested_threads, items);
  std::atomic<std::int64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    for (std::int64_t i; (i = next.fetch_add(1)) < items;) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
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

}  // namespace dplr
