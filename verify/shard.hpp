// Partitioning a sweep over processes and machines: `--shard I/N` runs the positions i of the sweep's case
// list with i mod N == I. Round-robin by position (not a hash of the id) because the lists are short and
// ordered by cost (CPU part, then GPU kernels by dtype and shape): every shard gets a like share of each
// part, and N shards together hold every position exactly once. All shards must run the same build and
// options (`dplr report merge` refuses them otherwise), so the list, and with it the partition, is the same
// in each.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace dplr {

struct Shard {
  int index = 0;
  int count = 1;
  bool holds(std::int64_t position) const { return position % count == index; }
  bool whole() const { return count == 1; }
};

// "I/N" with 0 <= I < N; InputError naming `option` and what was expected otherwise.
Shard parse_shard(std::string_view text, std::string_view option = "--shard");
std::string shard_name(const Shard& shard);  // "I/N"

}  // namespace dplr
