// Internal to io/: error helper, byte-order loads and stores, checked element counts, and the element
// codecs shared by the safetensors and npy readers and writers. Not part of the public API.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json_fwd.hpp>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace dplr::io_detail {

// Every io error is "<origin>: <what>".
template <class... Args>
[[noreturn]] void fail(std::string_view origin, fmt::format_string<Args...> format, Args&&... args) {
  throw InputError(fmt::format("{}: {}", origin, fmt::format(format, std::forward<Args>(args)...)));
}

inline std::uint64_t load_le(const std::byte* p, int width) {
  std::uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}
inline std::uint64_t load_be(const std::byte* p, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}
inline void store_le(std::vector<std::byte>& out, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
inline void append(std::vector<std::byte>& out, std::string_view s) {
  for (char c : s) out.push_back(static_cast<std::byte>(c));
}

// Elements of `shape`, or nullopt when a dimension is negative or the product of the nonzero dimensions
// overflows int64 (such a shape is refused even when another dimension is zero, as the safetensors crate
// does, so later stride arithmetic can never overflow).
std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape);

// Decodes `count` elements of `dtype` from `data` (exactly count * width bytes) to double, exactly.
// int64 beyond 2^53 in magnitude is refused; `what` names the tensor in that message.
std::vector<double> decode_values(std::span<const std::byte> data, DType dtype, bool big_endian,
                                  std::string_view origin, std::string_view what);

// Checks a tensor before writing: dimensions >= 0, values.size() == numel, integer values integral and in
// range (|v| <= 2^53 for I64). `what` names the tensor.
void check_writable(const Tensor& tensor, std::string_view origin, std::string_view what);
// Appends `values` rounded to `dtype` (round to nearest even), in the given byte order.
void encode_values(std::span<const double> values, DType dtype, bool big_endian, std::vector<std::byte>& out);

// Reorders between C (row-major) and Fortran (column-major) layouts of the same shape.
std::vector<double> fortran_to_c(std::span<const double> values, std::span<const std::int64_t> shape);
std::vector<double> c_to_fortran(std::span<const double> values, std::span<const std::int64_t> shape);

// Parses JSON text strictly: duplicate keys in an object are refused (nlohmann would keep the last one
// silently), and so is nesting deeper than `max_depth` containers. `what` names the text in messages.
nlohmann::json parse_json_strict(std::string_view text, int max_depth, std::string_view origin,
                                 std::string_view what);

// The `__metadata__.json` convention of npz archives and folders: a JSON object of strings.
std::map<std::string, std::string> parse_metadata_json(std::span<const std::byte> bytes, std::string_view origin);
std::string metadata_json(const std::map<std::string, std::string>& metadata, std::string_view origin);
// Compact JSON text; strings that are not UTF-8 are an InputError (JSON cannot hold them).
std::string dump_json(const nlohmann::json& j, std::string_view origin);
inline constexpr std::string_view kMetadataMember = "__metadata__.json";

// The checks of a safetensors file's 8-byte header length against the file's size; returns the length.
// The file reader makes them before it reads the rest, so a bad prefix costs 8 bytes of reading.
std::uint64_t check_safetensors_prefix(std::span<const std::byte> prefix, std::uint64_t file_size,
                                       std::string_view origin);

// An .npy header: what the data that follows must hold. parse_npy_header needs only the bytes up to
// data_start, so a reader can check a tensor's size before it reads or inflates the data.
struct NpyHeader {
  std::string descr;
  DType dtype = DType::F64;
  bool big_endian = false, fortran_order = false;
  std::vector<std::int64_t> shape;
  std::uint64_t numel = 0;
  std::size_t data_start = 0;  // bytes before the data
};
NpyHeader parse_npy_header(std::span<const std::byte> bytes, std::string_view origin);

}  // namespace dplr::io_detail
