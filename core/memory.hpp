// The memory a command may use: readers, generators and the reference estimate what they are about to
// allocate and refuse, naming the figure, what would exceed the limit, rather than end in std::bad_alloc.
// The limit is process-wide (the CLI's --max-memory); by default half the physical memory.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace dplr {

inline constexpr double kDefaultMemoryFraction = 0.5;  // of physical memory

std::uint64_t physical_memory_bytes();  // 0 where the system does not say
std::uint64_t memory_limit();           // bytes
void set_memory_limit(std::uint64_t bytes);
// "8G", "512M", "1.5GiB", "123456" (bytes), "50%" (of physical memory); InputError when malformed or zero.
std::uint64_t parse_memory_size(std::string_view text);
std::string format_bytes(std::uint64_t bytes);  // "1.50 GiB"

// Throws InputError "{origin}: {what} needs about N, above the memory limit of M (--max-memory)" when
// bytes > memory_limit().
void require_memory(std::uint64_t bytes, std::string_view origin, std::string_view what);

// Products and sums for estimates, saturating at UINT64_MAX instead of wrapping.
std::uint64_t saturating_product(std::initializer_list<std::uint64_t> factors);
std::uint64_t saturating_sum(std::initializer_list<std::uint64_t> terms);

}  // namespace dplr
