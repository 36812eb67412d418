// .npy reader and writer (numpy's format, NEP 1 / numpy.lib.format).
//
// Layout: "\x93NUMPY", major, minor (1.0, 2.0 or 3.0), header length (2 bytes LE in 1.0, 4 in 2.0/3.0),
// the header — a Python dict literal such as {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and ended by '\n' — then the raw data, exactly numel x width bytes.
// numpy reads the header with ast.literal_eval; here a small strict parser accepts exactly the three keys
// with the literal forms numpy writes (str, True/False, tuple of ints), so nothing else can sneak in.
#include <limits>

#include <fmt/ranges.h>

#include "core/memory.hpp"
#include "io/detail/io_common.hpp"
#include "io/tensor_io.hpp"

namespace dplr {
namespace {

using io_detail::fail;

constexpr std::string_view kMagic = "\x93NUMPY";

struct Descr {
  DType dtype;
  bool big_endian;
};

Descr parse_descr(const std::string& descr, std::string_view origin) {
  auto unsupported = [&] {
    fail(origin, "unsupported dtype descr '{}' (expected '<', '>' or '|' then f2, f4, f8, i4 or i8)", descr);
  };
  if (descr.size() != 3 || (descr[0] != '<' && descr[0] != '>' && descr[0] != '|')) unsupported();
  const std::string_view kind = std::string_view(descr).substr(1);
  DType dtype;
  if (kind == "f2") dtype = DType::F16;
  else if (kind == "f4") dtype = DType::F32;
  else if (kind == "f8") dtype = DType::F64;
  else if (kind == "i4") dtype = DType::I32;
  else if (kind == "i8") dtype = DType::I64;
  else unsupported();
  // '|' means "byte order not applicable"; numpy takes it as native. We read it as little-endian, the
  // order of every machine numpy is used on here.
  return {dtype, descr[0] == '>'};
}

// The header dict: {'descr': str, 'fortran_order': bool, 'shape': tuple of ints}, any key order,
// optional trailing comma, then only spaces up to the final '\n'.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view origin) : s_(text), origin_(origin) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<std::int64_t>& shape) {
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    while (!eat('}')) {
      const std::string key = string_literal();
      expect(':');
      bool* seen = nullptr;
      if (key == "descr") { seen = &seen_descr; descr = string_literal(); }
      else if (key == "fortran_order") { seen = &seen_order; fortran_order = boolean(); }
      else if (key == "shape") { seen = &seen_shape; shape = tuple(); }
      else fail(origin_, "header has the key '{}' (expected exactly 'descr', 'fortran_order', 'shape')", key);
      if (*seen) fail(origin_, "header has the key '{}' twice", key);
      *seen = true;
      if (!eat(',')) { expect('}'); break; }
    }
    if (!seen_descr || !seen_order || !seen_shape)
      fail(origin_, "header lacks '{}' (expected 'descr', 'fortran_order' and 'shape')",
           !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
    if (pos_ + 1 != s_.size() || s_[pos_] != '\n')
      fail(origin_, "header must end with spaces and a newline after the dict (found {:?} at byte {})",
           s_.substr(pos_, 16), pos_);
  }

 private:
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(origin_, "malformed header dict: expected '{}' at byte {} of {:?}", c, pos_, excerpt());
  }
  std::string string_literal() {
    skip_space();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"'))
      fail(origin_, "malformed header dict: expected a quoted string at byte {} of {:?}", pos_, excerpt());
    const char quote = s_[pos_++];
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\' || s_[pos_] == '\n' || static_cast<unsigned char>(s_[pos_]) >= 0x80)
        fail(origin_, "malformed header dict: unexpected character in a string at byte {}", pos_);
      ++pos_;
    }
    if (pos_ >= s_.size()) fail(origin_, "malformed header dict: unterminated string");
    return std::string(s_.substr(start, pos_++ - start));
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}})
      if (s_.substr(pos_, word.size()) == word) { pos_ += word.size(); return value; }
    fail(origin_, "malformed header dict: 'fortran_order' must be True or False (at byte {})", pos_);
  }
  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> dims;
    expect('(');
    bool trailing_comma = false;
    while (!eat(')')) {
      skip_space();
      const std::size_t start = pos_;
      std::int64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        const int digit = s_[pos_++] - '0';
        if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10)
          fail(origin_, "shape dimension is too large (at byte {})", start);
        v = v * 10 + digit;
      }
      if (pos_ == start) fail(origin_, "malformed header dict: 'shape' must be a tuple of non-negative integers (at byte {})", pos_);
      if (s_[start] == '0' && pos_ - start > 1) fail(origin_, "malformed header dict: integer with a leading zero in 'shape'");
      dims.push_back(v);
      trailing_comma = eat(',');
      if (!trailing_comma) { expect(')'); break; }
    }
    // (3) is the integer 3 in Python, not a tuple: numpy itself refuses it.
    if (dims.size() == 1 && !trailing_comma) fail(origin_, "malformed header dict: 'shape' (n) needs a comma: (n,)");
    return dims;
  }

  std::string_view excerpt() const { return s_.substr(0, 160); }  // the header, as far as a message can show

  std::string_view s_;
  std::string_view origin_;
  std::size_t pos_ = 0;
};

std::string shape_repr(const std::vector<std::int64_t>& shape) {  // Python's repr of a tuple
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

}  // namespace

io_detail::NpyHeader io_detail::parse_npy_header(std::span<const std::byte> bytes, std::string_view origin) {
  if (bytes.size() < 10 || std::string_view(reinterpret_cast<const char*>(bytes.data()), 6) != kMagic)
    fail(origin, "not an .npy file: it does not start with the magic \\x93NUMPY");
  const int major = std::to_integer<int>(bytes[6]), minor = std::to_integer<int>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    fail(origin, "unsupported .npy format version {}.{} (expected 1.0, 2.0 or 3.0)", major, minor);
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + length_bytes) fail(origin, "truncated .npy file: {} bytes, header length missing", bytes.size());
  const std::uint64_t header_length = io_detail::load_le(bytes.data() + 8, static_cast<int>(length_bytes));
  if (header_length > bytes.size() - 8 - length_bytes)
    fail(origin, "truncated .npy file: header length says {} bytes, but only {} follow", header_length,
         bytes.size() - 8 - length_bytes);
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8 + length_bytes, header_length);

  io_detail::NpyHeader h;
  h.data_start = 8 + length_bytes + header_length;
  HeaderParser(header, origin).parse(h.descr, h.fortran_order, h.shape);
  const Descr d = parse_descr(h.descr, origin);
  h.dtype = d.dtype;
  h.big_endian = d.big_endian;
  const auto numel = io_detail::checked_numel(h.shape);
  const std::uint64_t width = dtype_size(d.dtype);
  if (!numel || *numel > std::numeric_limits<std::uint64_t>::max() / width)
    fail(origin, "shape {} has too many elements", shape_string(h.shape));
  h.numel = *numel;
  return h;
}

Tensor parse_npy(std::span<const std::byte> bytes, std::string_view origin) {
  io_detail::NpyHeader h = io_detail::parse_npy_header(bytes, origin);
  const std::uint64_t width = dtype_size(h.dtype);
  const std::uint64_t data_size = bytes.size() - h.data_start;
  if (data_size != h.numel * width)
    fail(origin, "holds {} data bytes, but '{}' x shape {} needs {} x {} = {} bytes{}", data_size, h.descr,
         shape_string(h.shape), h.numel, width, h.numel * width, data_size < h.numel * width ? " (truncated file?)" : "");
  require_memory(saturating_sum({bytes.size(), saturating_product({h.numel, sizeof(double)})}), origin,
                 "widening the array to double");

  Tensor t;
  t.dtype = h.dtype;
  t.values = io_detail::decode_values(bytes.subspan(h.data_start), h.dtype, h.big_endian, origin, "array");
  if (h.fortran_order) t.values = io_detail::fortran_to_c(t.values, h.shape);
  t.shape = std::move(h.shape);
  return t;
}

std::vector<std::byte> serialize_npy(const Tensor& tensor, const TensorWriteOptions& options, std::string_view origin) {
  if (tensor.dtype == DType::BF16)
    fail(origin, "bf16 cannot be stored in .npy (numpy has no bfloat16 dtype); write .safetensors instead");
  io_detail::check_writable(tensor, origin, "array");
  if (options.npy_version < 0 || options.npy_version > 3)
    fail(origin, "npy format version {} requested (expected 1, 2, 3, or 0 for automatic)", options.npy_version);

  const char kind = dtype_is_float(tensor.dtype) ? 'f' : 'i';
  std::string dict = fmt::format("{{'descr': '{}{}{}', 'fortran_order': {}, 'shape': {}, }}", options.big_endian ? '>' : '<',
                                 kind, dtype_size(tensor.dtype), options.fortran_order ? "True" : "False",
                                 shape_repr(tensor.shape));
  // numpy pads magic + version + length + header to a multiple of 64 bytes, the last byte '\n'.
  auto padded_length = [&](std::size_t prefix) { return dict.size() + 1 + (64 - (prefix + dict.size() + 1) % 64) % 64; };
  int version = options.npy_version;
  if (version == 0) version = padded_length(10) <= 0xffff ? 1 : 2;
  if (version == 1 && padded_length(10) > 0xffff)
    fail(origin, "the .npy header needs {} bytes, more than format 1.0 allows; use version 2", padded_length(10));
  const std::size_t prefix = version == 1 ? 10 : 12;
  const std::size_t header_length = padded_length(prefix);
  dict.append(header_length - dict.size() - 1, ' ');
  dict.push_back('\n');

  std::vector<std::byte> out;
  out.reserve(prefix + header_length + tensor.values.size() * dtype_size(tensor.dtype));
  io_detail::append(out, kMagic);
  out.push_back(static_cast<std::byte>(version));
  out.push_back(std::byte{0});
  io_detail::store_le(out, header_length, version == 1 ? 2 : 4);
  io_detail::append(out, dict);
  if (options.fortran_order)
    io_detail::encode_values(io_detail::c_to_fortran(tensor.values, tensor.shape), tensor.dtype, options.big_endian, out);
  else
    io_detail::encode_values(tensor.values, tensor.dtype, options.big_endian, out);
  return out;
}

}  // namespace dplr
