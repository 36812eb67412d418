// Element codecs and helpers shared by the io/ readers and writers (see io/detail/io_common.hpp).
#include <bit>
#include <cmath>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "io/detail/io_common.hpp"

namespace dplr::io_detail {
namespace {

// double holds every integer up to 2^53 exactly; beyond it an int64 would silently change value.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53
constexpr std::int64_t kMaxExactInt64 = std::int64_t{1} << 53;

std::vector<double> reorder(std::span<const double> values, std::span<const std::int64_t> shape,
                            bool from_fortran) {
  const std::size_t n = values.size();
  const std::size_t nd = shape.size();
  if (nd <= 1 || n == 0) return {values.begin(), values.end()};
  std::vector<std::int64_t> c_stride(nd, 1);
  for (std::size_t k = nd - 1; k-- > 0;) c_stride[k] = c_stride[k + 1] * shape[k + 1];
  std::vector<std::int64_t> index(nd, 0);
  std::vector<double> out(n);
  std::int64_t c = 0;  // C-order position of the element at Fortran-order position p
  for (std::size_t p = 0; p < n; ++p) {
    if (from_fortran) out[static_cast<std::size_t>(c)] = values[p];
    else out[p] = values[static_cast<std::size_t>(c)];
    for (std::size_t k = 0; k < nd; ++k) {  // Fortran order: the first index runs fastest
      ++index[k];
      c += c_stride[k];
      if (index[k] < shape[k]) break;
      c -= c_stride[k] * shape[k];
      index[k] = 0;
    }
  }
  return out;
}

}  // namespace

std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape) {
  std::uint64_t product = 1;  // of the nonzero dimensions
  bool has_zero = false;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) { has_zero = true; continue; }
    const auto ud = static_cast<std::uint64_t>(d);
    if (product > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / ud) return std::nullopt;
    product *= ud;
  }
  return has_zero ? 0 : product;
}

std::vector<double> decode_values(std::span<const std::byte> data, DType dtype, bool big_endian,
                                  std::string_view origin, std::string_view what) {
  const int width = static_cast<int>(dtype_size(dtype));
  const std::size_t count = data.size() / static_cast<std::size_t>(width);
  std::vector<double> values(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::byte* p = data.data() + i * static_cast<std::size_t>(width);
    const std::uint64_t bits = big_endian ? load_be(p, width) : load_le(p, width);
    switch (dtype) {
      case DType::F64: values[i] = std::bit_cast<double>(bits); break;
      case DType::F32: values[i] = std::bit_cast<float>(static_cast<std::uint32_t>(bits)); break;
      case DType::F16: values[i] = fp16_bits_to_double(static_cast<std::uint16_t>(bits)); break;
      case DType::BF16: values[i] = bf16_bits_to_double(static_cast<std::uint16_t>(bits)); break;
      case DType::I32: values[i] = std::bit_cast<std::int32_t>(static_cast<std::uint32_t>(bits)); break;
      case DType::I64: {
        const auto v = std::bit_cast<std::int64_t>(bits);
        if (v > kMaxExactInt64 || v < -kMaxExactInt64)
          fail(origin, "{}: element {} is {}, beyond 2^53 in magnitude, which a double cannot hold exactly",
               what, i, v);
        values[i] = static_cast<double>(v);
        break;
      }
    }
  }
  return values;
}

void check_writable(const Tensor& tensor, std::string_view origin, std::string_view what) {
  const auto numel = checked_numel(tensor.shape);
  if (!numel)
    fail(origin, "{}: shape {} has a negative dimension or too many elements", what, shape_string(tensor.shape));
  if (tensor.values.size() != *numel)
    fail(origin, "{}: holds {} values but shape {} has {} elements", what, tensor.values.size(),
         shape_string(tensor.shape), *numel);
  if (dtype_is_float(tensor.dtype)) return;
  const double limit = tensor.dtype == DType::I32 ? 2147483648.0 : kMaxExactInteger;
  const double low = -limit, high = tensor.dtype == DType::I32 ? limit - 1 : limit;
  for (std::size_t i = 0; i < tensor.values.size(); ++i) {
    const double v = tensor.values[i];
    if (!std::isfinite(v) || v != std::trunc(v))
      fail(origin, "{}: element {} is {}, not an integer, but the dtype is {}", what, i, v, dtype_name(tensor.dtype));
    if (v < low || v > high)
      fail(origin, "{}: element {} is {}, outside the range [{}, {}] {} can hold{}", what, i, v, low, high,
           dtype_name(tensor.dtype), tensor.dtype == DType::I64 ? " exactly through a double" : "");
  }
}

void encode_values(std::span<const double> values, DType dtype, bool big_endian, std::vector<std::byte>& out) {
  const int width = static_cast<int>(dtype_size(dtype));
  out.reserve(out.size() + values.size() * static_cast<std::size_t>(width));
  for (double v : values) {
    std::uint64_t bits = 0;
    switch (dtype) {
      case DType::F64: bits = std::bit_cast<std::uint64_t>(v); break;
      // round_to_dtype gives a float value (or infinity) exactly, so the cast below does not round again.
      case DType::F32: bits = std::bit_cast<std::uint32_t>(static_cast<float>(round_to_dtype(v, DType::F32))); break;
      case DType::F16: bits = double_to_fp16_bits(v); break;
      case DType::BF16: bits = double_to_bf16_bits(v); break;
      case DType::I32: bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(v)); break;
      case DType::I64: bits = static_cast<std::uint64_t>(static_cast<std::int64_t>(v)); break;
    }
    if (big_endian)
      for (int i = width - 1; i >= 0; --i) out.push_back(static_cast<std::byte>((bits >> (8 * i)) & 0xff));
    else
      store_le(out, bits, width);
  }
}

std::vector<double> fortran_to_c(std::span<const double> values, std::span<const std::int64_t> shape) {
  return reorder(values, shape, true);
}
std::vector<double> c_to_fortran(std::span<const double> values, std::span<const std::int64_t> shape) {
  return reorder(values, shape, false);
}

nlohmann::json parse_json_strict(std::string_view text, int max_depth, std::string_view origin,
                                 std::string_view what) {
  // nlohmann stops reading at a NUL byte, which would let anything after one pass unread; no valid JSON
  // text holds one (control characters in strings must be escaped).
  if (const auto nul = text.find('\0'); nul != std::string_view::npos)
    fail(origin, "{} holds a NUL byte at offset {} of {}; expected only JSON, then nothing but whitespace", what, nul,
         text.size());
  // The callback sees events in document order, so a stack of key sets mirrors the open objects.
  std::vector<std::set<std::string>> keys;
  int depth = 0;
  auto check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        if (++depth > max_depth) fail(origin, "{} nests deeper than {} levels", what, max_depth);
        if (event == E::object_start) keys.emplace_back();
        break;
      case E::object_end:
        keys.pop_back();
        --depth;
        break;
      case E::array_end: --depth; break;
      case E::key:
        if (!keys.back().insert(parsed.get<std::string>()).second)
          fail(origin, "{} has the key \"{}\" twice", what, parsed.get<std::string>());
        break;
      case E::value: break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, "{} is not valid JSON: {}", what, e.what());
  }
}

std::map<std::string, std::string> parse_metadata_json(std::span<const std::byte> bytes, std::string_view origin) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const nlohmann::json j = parse_json_strict(text, 1, origin, kMetadataMember);
  if (!j.is_object()) fail(origin, "{} must be a JSON object of strings", kMetadataMember);
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      fail(origin, "{}: the value of \"{}\" must be a string, not {}", kMetadataMember, key, value.type_name());
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

std::string metadata_json(const std::map<std::string, std::string>& metadata, std::string_view origin) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, value] : metadata) j[key] = value;
  return dump_json(j, origin);
}

std::string dump_json(const nlohmann::json& j, std::string_view origin) {
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error&) {  // JSON text must be UTF-8; a reader would refuse it
    fail(origin, "a tensor name or metadata string is not valid UTF-8, which the file's JSON cannot hold");
  }
}

}  // namespace dplr::io_detail
