#include "core/memory.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace dplr {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

std::atomic<std::uint64_t>& stored_limit() {
  static std::atomic<std::uint64_t> limit{0};  // 0: not set, use the default
  return limit;
}

}  // namespace

std::uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return saturating_product({static_cast<std::uint64_t>(pages), static_cast<std::uint64_t>(page_size)});
}

std::uint64_t memory_limit() {
  if (const std::uint64_t set = stored_limit().load()) return set;
  const std::uint64_t physical = physical_memory_bytes();
  // Where the system does not say, no limit: the allocator still has the last word.
  return physical ? static_cast<std::uint64_t>(static_cast<double>(physical) * kDefaultMemoryFraction) : kMax;
}

void set_memory_limit(std::uint64_t bytes) { stored_limit() = bytes; }

std::uint64_t parse_memory_size(std::string_view text) {
  auto refuse = [&]() -> std::uint64_t {
    throw InputError(fmt::format("--max-memory '{}': expected a size such as 8G, 512M, 1.5GiB, a byte count, or a "
                                 "percentage of physical memory such as 50%",
                                 text));
  };
  double number = 0.0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(begin, end, number);
  if (error != std::errc() || rest == begin || !std::isfinite(number) || number <= 0.0) return refuse();
  std::string_view unit(rest, static_cast<std::size_t>(end - rest));
  double bytes = 0.0;
  if (unit == "%") {
    if (number > 100.0 || physical_memory_bytes() == 0) return refuse();
    bytes = number / 100.0 * static_cast<double>(physical_memory_bytes());
  } else {
    if (unit.ends_with("iB")) unit.remove_suffix(2);
    else if (unit.size() == 2 && (unit[1] == 'B' || unit[1] == 'b')) unit.remove_suffix(1);
    double scale = 0.0;
    if (unit.empty() || unit == "B" || unit == "b") scale = 1.0;
    else if (unit == "K" || unit == "k") scale = 0x1p10;
    else if (unit == "M" || unit == "m") scale = 0x1p20;
    else if (unit == "G" || unit == "g") scale = 0x1p30;
    else if (unit == "T" || unit == "t") scale = 0x1p40;
    else return refuse();
    bytes = number * scale;
  }
  if (bytes < 1.0 || bytes >= 0x1p64) return refuse();
  return static_cast<std::uint64_t>(bytes);
}

std::string format_bytes(std::uint64_t bytes) {
  if (bytes == kMax) return "more than 16 EiB";
  if (bytes < (1u << 10)) return fmt::format("{} bytes", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  int unit = 0;
  while (value >= 1024.0 && unit < 5) value /= 1024.0, ++unit;
  return fmt::format("{:.2f} {}", value, units[unit]);
}

void require_memory(std::uint64_t bytes, std::string_view origin, std::string_view what) {
  const std::uint64_t limit = memory_limit();
  if (bytes > limit)
    throw InputError(fmt::format("{}: {} needs about {}, above the memory limit of {} (--max-memory; default {:.0f}% "
                                 "of physical memory)",
                                 origin, what, format_bytes(bytes), format_bytes(limit), 100 * kDefaultMemoryFraction));
}

std::uint64_t saturating_product(std::initializer_list<std::uint64_t> factors) {
  std::uint64_t product = 1;
  for (std::uint64_t f : factors) {
    if (f == 0) return 0;
    product = product > kMax / f ? kMax : product * f;
  }
  return product;
}

std::uint64_t saturating_sum(std::initializer_list<std::uint64_t> terms) {
  std::uint64_t sum = 0;
  for (std::uint64_t t : terms) sum = t > kMax - sum ? kMax : sum + t;
  return sum;
}

}  // namespace dplr
