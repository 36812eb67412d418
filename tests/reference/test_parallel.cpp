// core/parallel.hpp: every item runs once, and of several items that throw, the lowest one's exception is
// rethrown whatever the timing (the safetensors reader and the comparison report that one as "the first").
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel.hpp"

namespace dplr {
namespace {

TEST(ParallelFor, EveryItemRunsOnce) {
  for (int threads : {1, 2, 7}) {
    std::vector<std::atomic<int>> runs(1000);
    parallel_for(1000, threads, [&](std::int64_t i) { ++runs[i]; }, Progress::None);
    for (const auto& r : runs) ASSERT_EQ(r.load(), 1) << threads << " threads";
  }
}

TEST(ParallelFor, TheLowestThrowingItemIsRethrownWhateverTheTiming) {
  // Item 3 throws last in time (it sleeps first), 9 and 20 throw at once on other workers.
  for (int threads : {1, 2, 8})
    for (int repeat = 0; repeat < 5; ++repeat) {
      try {
        parallel_for(
            32, threads,
            [](std::int64_t i) {
              if (i == 3) std::this_thread::sleep_for(std::chrono::milliseconds(30));
              if (i == 3 || i == 9 || i == 20) throw std::runtime_error("item " + std::to_string(i));
            },
            Progress::None);
        FAIL() << "nothing was rethrown";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "item 3") << threads << " threads";
      }
    }
}

}  // namespace
}  // namespace dplr
