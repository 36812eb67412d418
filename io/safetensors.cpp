// .safetensors reader and writer.
//
// Layout: 8 bytes little-endian N, then N bytes of JSON header
//   {"__metadata__": {"k": "v"}, "NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...}
// then the data buffer; offsets are relative to the buffer. The checks follow the safetensors crate's
// reader (read_metadata + Metadata::validate): N <= 100 MB, N within the file, header a JSON object,
// tensors sorted by offset tile the buffer exactly from 0 to its end, END - BEGIN == numel x width.
// We refuse a few things the crate lets through silently: duplicate keys (serde keeps the last), unknown
// fields in a tensor entry, and dtypes this project has no use for (named as such).
#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/memory.hpp"
#include "core/parallel.hpp"
#include "io/detail/io_common.hpp"
#include "io/tensor_io.hpp"

namespace dplr {
namespace {

using io_detail::fail;

struct Entry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;
};

// Dtypes the format defines that we do not read: refused as unsupported rather than unknown.
constexpr std::string_view kOtherSafetensorsDtypes[] = {
    "BOOL", "U8", "I8", "U16", "I16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
    "C64"};

std::uint64_t unsigned_field(const nlohmann::json& j, std::string_view origin, const std::string& name,
                             std::string_view field) {
  if (!j.is_number_unsigned())
    fail(origin, "tensor '{}': {} must hold non-negative integers, found {}", name, field, j.dump());
  return j.get<std::uint64_t>();
}

Entry parse_entry(const std::string& name, const nlohmann::json& info, std::string_view origin) {
  if (!info.is_object())
    fail(origin, "tensor '{}': header entry must be an object with dtype, shape and data_offsets, found {}", name,
         info.type_name());
  for (const auto& [key, value] : info.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail(origin, "tensor '{}': unexpected field \"{}\" (expected dtype, shape, data_offsets)", name, key);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) fail(origin, "tensor '{}': header entry lacks \"{}\"", name, key);

  const auto& dtype_json = info["dtype"];
  if (!dtype_json.is_string()) fail(origin, "tensor '{}': dtype must be a string, found {}", name, dtype_json.dump());
  const std::string dtype_text = dtype_json.get<std::string>();
  const auto dtype = dtype_from_name(dtype_text);
  if (!dtype) {
    const bool known = std::ranges::find(kOtherSafetensorsDtypes, dtype_text) != std::end(kOtherSafetensorsDtypes);
    fail(origin, "tensor '{}': {} dtype \"{}\" (expected F64, F32, F16, BF16, I64 or I32)", name,
         known ? "unsupported" : "unknown", dtype_text);
  }

  const auto& shape_json = info["shape"];
  if (!shape_json.is_array()) fail(origin, "tensor '{}': shape must be an array, found {}", name, shape_json.dump());
  std::vector<std::int64_t> shape;
  for (const auto& d : shape_json) {
    const std::uint64_t v = unsigned_field(d, origin, name, "shape");
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail(origin, "tensor '{}': shape dimension {} is too large", name, v);
    shape.push_back(static_cast<std::int64_t>(v));
  }

  const auto& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(origin, "tensor '{}': data_offsets must be [begin, end], found {}", name, offsets.dump());
  const std::uint64_t begin = unsigned_field(offsets[0], origin, name, "data_offsets");
  const std::uint64_t end = unsigned_field(offsets[1], origin, name, "data_offsets");
  if (end < begin) fail(origin, "tensor '{}': data_offsets [{}, {}] end before they begin", name, begin, end);

  const auto numel = io_detail::checked_numel(shape);
  const std::uint64_t width = dtype_size(*dtype);
  if (!numel || *numel > std::numeric_limits<std::uint64_t>::max() / width)
    fail(origin, "tensor '{}': shape {} has too many elements", name, shape_string(shape));
  if (end - begin != *numel * width)
    fail(origin, "tensor '{}': data_offsets [{}, {}] span {} bytes, but {} x {} needs {} x {} = {} bytes", name, begin,
         end, end - begin, dtype_text, shape_string(shape), *numel, width, *numel * width);
  return {name, *dtype, std::move(shape), begin, end};
}

}  // namespace

std::uint64_t io_detail::check_safetensors_prefix(std::span<const std::byte> prefix, std::uint64_t file_size,
                                                  std::string_view origin) {
  if (file_size < 8 || prefix.size() < 8)
    fail(origin, "{} bytes is too short for a safetensors file (it starts with an 8-byte header length)", file_size);
  const std::uint64_t header_size = io_detail::load_le(prefix.data(), 8);
  if (header_size > kSafetensorsMaxHeaderBytes)
    fail(origin, "header length field says {} bytes, above the {}-byte limit (not a safetensors file, or corrupt)",
         header_size, kSafetensorsMaxHeaderBytes);
  if (header_size > file_size - 8)
    fail(origin, "header length field says {} bytes, but only {} bytes follow it (truncated file?)", header_size,
         file_size - 8);
  return header_size;
}

TensorFile parse_safetensors(std::span<const std::byte> bytes, std::string_view origin) {
  const std::uint64_t header_size = io_detail::check_safetensors_prefix(bytes.first(std::min<std::size_t>(8, bytes.size())),
                                                                       bytes.size(), origin);
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8, header_size);
  if (header.empty() || header.front() != '{')
    fail(origin, "header must be a JSON object starting with '{{' (not a safetensors file?)");
  // Depth 3: the header object, a tensor entry or __metadata__, a shape or data_offsets array.
  const nlohmann::json j = io_detail::parse_json_strict(header, 3, origin, "the header");
  if (!j.is_object()) fail(origin, "header must be a JSON object, found {}", j.type_name());

  TensorFile file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(origin, "__metadata__ must be an object of strings, found {}", value.type_name());
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          fail(origin, "__metadata__: the value of \"{}\" must be a string, found {}", mkey, mvalue.dump());
        file.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, value, origin));
  }

  // The tensors, in offset order, must tile the buffer: no gap, no overlap, nothing left over.
  const std::uint64_t buffer_size = bytes.size() - 8 - header_size;
  std::ranges::sort(entries, {}, [](const Entry& e) { return std::pair(e.begin, e.end); });
  std::uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < expected)
      fail(origin, "tensor '{}': data_offsets [{}, {}] overlap tensor '{}', which ends at {}", e.name, e.begin, e.end,
           previous->name, expected);
    if (e.begin > expected)
      fail(origin, "tensor '{}': data_offsets begin at {}, but the data must be contiguous and {} is next{}", e.name,
           e.begin, expected, previous ? fmt::format(" (after tensor '{}')", previous->name) : std::string(" (the start)"));
    if (e.end > buffer_size)
      fail(origin, "tensor '{}': data_offsets [{}, {}] go past the end of the {}-byte data buffer (truncated file?)",
           e.name, e.begin, e.end, buffer_size);
    expected = e.end;
    previous = &e;
  }
  if (expected != buffer_size)
    fail(origin, "the tensors cover {} bytes of data, but {} bytes follow the header", expected, buffer_size);

  std::uint64_t values = 0;
  for (const Entry& e : entries) values = saturating_sum({values, (e.end - e.begin) / dtype_size(e.dtype)});
  require_memory(saturating_sum({bytes.size(), saturating_product({values, sizeof(double)})}), origin,
                 "widening the tensors to double");
  // Each tensor widened on a thread of its own (a training-scale recording holds 4 GB of doubles, whose first
  // touch is most of the reading); the first error in offset order is the one reported (parallel_for's lowest item).
  const std::byte* data = bytes.data() + 8 + header_size;
  std::vector<Tensor> tensors(entries.size());
  parallel_for(
      static_cast<std::int64_t>(entries.size()), /*requested_threads=*/0,
      [&](std::int64_t i) {
        const Entry& e = entries[i];
        tensors[i].values = io_detail::decode_values({data + e.begin, e.end - e.begin}, e.dtype, false, origin,
                                                     fmt::format("tensor '{}'", e.name));
      },
      Progress::None);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    tensors[i].dtype = entries[i].dtype;
    tensors[i].shape = std::move(entries[i].shape);
    file.tensors.emplace(std::move(entries[i].name), std::move(tensors[i]));
  }
  return file;
}

std::vector<std::byte> serialize_safetensors(const TensorFile& file, std::string_view origin) {
  // As the safetensors crate writes: wider dtypes first (so every tensor stays aligned to its width when
  // the header is padded to 8 bytes), then by name.
  std::vector<const std::pair<const std::string, Tensor>*> order;
  for (const auto& item : file.tensors) {
    if (item.first == "__metadata__") fail(origin, "a tensor cannot be named __metadata__ in a safetensors file");
    io_detail::check_writable(item.second, origin, fmt::format("tensor '{}'", item.first));
    order.push_back(&item);
  }
  std::ranges::stable_sort(order, [](auto* x, auto* y) { return dtype_size(x->second.dtype) > dtype_size(y->second.dtype); });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : file.metadata) m[key] = value;
  }
  std::uint64_t offset = 0;
  for (const auto* item : order) {
    const Tensor& t = item->second;
    const std::uint64_t size = t.values.size() * dtype_size(t.dtype);
    header[item->first] = {{"dtype", std::string(dtype_name(t.dtype))},
                           {"shape", t.shape},
                           {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error&) {
    fail(origin, "a tensor name or metadata string is not valid UTF-8, which the JSON header cannot hold");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::byte> out;
  out.reserve(8 + text.size() + offset);
  io_detail::store_le(out, text.size(), 8);
  io_detail::append(out, text);
  for (const auto* item : order) io_detail::encode_values(item->second.values, item->second.dtype, false, out);
  return out;
}

}  // namespace dplr
