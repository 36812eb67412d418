#include "verify/shard.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

#include "core/error.hpp"

namespace dplr {
namespace {
// A whole decimal number (no sign, no spaces); empty when the text is not one.
std::optional<int> parse_count(std::string_view text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}
}  // namespace

Shard parse_shard(std::string_view text, std::string_view option) {
  const auto slash = text.find('/');
  const auto index = slash == std::string_view::npos ? std::nullopt : parse_count(text.substr(0, slash));
  const auto count = slash == std::string_view::npos ? std::nullopt : parse_count(text.substr(slash + 1));
  if (!index || !count)
    throw InputError(fmt::format("{} '{}': expected I/N, two whole numbers with 0 <= I < N (e.g. 0/4)", option, text));
  if (*count < 1) throw InputError(fmt::format("{} '{}': the shard count N must be at least 1", option, text));
  if (*index >= *count)
    throw InputError(fmt::format("{} '{}': the shard index I must be below N = {} (shards 0/{} .. {}/{})", option, text,
                                 *count, *count, *count - 1, *count));
  return {*index, *count};
}

std::string shard_name(const Shard& shard) { return fmt::format("{}/{}", shard.index, shard.count); }

}  // namespace dplr
