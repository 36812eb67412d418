// Bad input, made by hand: each case must be an InputError whose message names the file, the tensor where
// known, and what was expected. Also every truncation and many byte flips of valid files: InputError or a
// valid result, never anything else (the fuzzers go further).
#include <gtest/gtest.h>

#include <zlib.h>

#include "core/memory.hpp"
#include "io/tensor_io.hpp"
#include "tests/io/io_test_util.hpp"

namespace dplr {
namespace {

using test::bytes_of;
using test::put_le;
using test::throws_input_error;

// ---------------------------------------------------------------- safetensors

std::vector<std::byte> st(std::string_view header, std::string_view data = {}, std::uint64_t claimed = UINT64_MAX) {
  std::string s;
  put_le(s, claimed == UINT64_MAX ? header.size() : claimed, 8);
  s += header;
  s += data;
  return bytes_of(s);
}

auto parse_st(std::vector<std::byte> b) {
  return [b = std::move(b)] { parse_safetensors(b, "bad.safetensors"); };
}

TEST(MalformedSafetensors, LengthField) {
  EXPECT_TRUE(throws_input_error(parse_st({}), {"bad.safetensors", "too short"}));
  EXPECT_TRUE(throws_input_error(parse_st(bytes_of("1234")), {"too short"}));
  // A header claiming gigabytes is refused from the 8 bytes alone.
  EXPECT_TRUE(throws_input_error(parse_st(st("{}", "", std::uint64_t{5} << 30)), {"100000000", "limit"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("{}", "", UINT64_MAX - 1)), {"limit"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("{}", "", 1000)), {"1000 bytes", "only 2 bytes follow", "truncated"}));
}

TEST(MalformedSafetensors, HeaderJson) {
  EXPECT_TRUE(throws_input_error(parse_st(st("")), {"JSON object"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("[1]")), {"JSON object"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("{\"x\": ")), {"not valid JSON"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("{} trailing")), {"not valid JSON"}));
  EXPECT_TRUE(throws_input_error(parse_st(st("{\"a\": \"\xff\"}")), {"not valid JSON"}));  // not UTF-8
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[[[[1]]]],"data_offsets":[0,4]}})")),
                                 {"nests deeper"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x": 3})")), {"tensor 'x'", "must be an object"}));
  // Padding with spaces after the object is what the writer does, so it is fine.
  EXPECT_TRUE(parse_safetensors(st("{}      "), "ok").tensors.empty());
  // Issue 11: nlohmann stops at a NUL, so bytes after one went unread; the safetensors crate refuses them.
  EXPECT_TRUE(throws_input_error(parse_st(st(std::string("{}\0junk", 7))), {"bad.safetensors", "NUL byte at offset 2"}));
}

TEST(MalformedSafetensors, Entries) {
  const std::string f4 = std::string(4, '\0');
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  f4 + f4)),
      {"bad.safetensors", "\"x\" twice"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}})", f4)),
                                 {"tensor 'x'", "unknown dtype \"F128\"", "expected F64"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", f4)),
                                 {"tensor 'x'", "unsupported dtype \"U8\""}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":3,"shape":[1],"data_offsets":[0,4]}})", f4)),
                                 {"dtype must be a string"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", f4)),
                                 {"tensor 'x'", "shape", "non-negative integers"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", f4)),
                                 {"non-negative integers"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", f4)),
                                 {"shape must be an array"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", f4)),
                                 {"data_offsets must be [begin, end]"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1]}})", f4)),
                                 {"tensor 'x'", "lacks \"data_offsets\""}));
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"offsets":[0,4]}})", f4)),
      {"unexpected field \"offsets\""}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", f4)),
                                 {"end before they begin"}));
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"x":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,4]}})", f4)),
      {"too many elements"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"__metadata__":{"scale":0.125}})")),
                                 {"__metadata__", "\"scale\" must be a string"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"__metadata__":["a"]})")), {"__metadata__ must be an object"}));
}

TEST(MalformedSafetensors, OffsetsAndSizes) {
  const std::string d8(8, '\0'), d12(12, '\0');
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8)),
                                 {"tensor 'x'", "span 8 bytes", "F32 x [3] needs 3 x 4 = 12 bytes"}));
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  d12)),
      {"tensor 'b'", "overlap tensor 'a'"}));
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  d12)),
      {"tensor 'b'", "contiguous", "4 is next"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)),
                                 {"tensor 'x'", "begin at 4", "the start"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", d8)),
                                 {"tensor 'x'", "past the end", "truncated"}));
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8)),
                                 {"cover 4 bytes", "8 bytes follow"}));
  EXPECT_TRUE(throws_input_error(
      parse_st(st(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "")), {"past the end"}));
  // Empty tensors may share an offset; the rest must still tile the buffer.
  EXPECT_EQ(parse_safetensors(st(R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"f":{"dtype":"I32","shape":[2,0],"data_offsets":[0,0]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                 std::string(4, '\0')),
                              "ok")
                .tensors.size(),
            3u);
}

TEST(MalformedSafetensors, Int64BeyondDoublePrecision) {
  std::string data;
  put_le(data, (std::uint64_t{1} << 53) + 1, 8);
  EXPECT_TRUE(throws_input_error(parse_st(st(R"({"n":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", data)),
                                 {"tensor 'n'", "element 0", "9007199254740993", "2^53"}));
}

// ---------------------------------------------------------------- npy

std::vector<std::byte> npy(std::string_view dict, std::string_view data, int major = 1, int minor = 0) {
  std::string header(dict);
  header += '\n';
  std::string s = "\x93NUMPY";
  s += static_cast<char>(major);
  s += static_cast<char>(minor);
  put_le(s, header.size(), major == 1 ? 2 : 4);
  return bytes_of(s + header + std::string(data));
}

auto parse_n(std::vector<std::byte> b) {
  return [b = std::move(b)] { parse_npy(b, "bad.npy"); };
}

TEST(MalformedNpy, MagicVersionLength) {
  const std::string d8(8, '\0');
  const char* ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  EXPECT_EQ(parse_npy(npy(ok, d8), "ok").values.size(), 1u);
  EXPECT_TRUE(throws_input_error(parse_n(bytes_of("PK\x03\x04 not npy")), {"bad.npy", "magic"}));
  EXPECT_TRUE(throws_input_error(parse_n(npy(ok, d8, 4)), {"version 4.0", "expected 1.0, 2.0 or 3.0"}));
  EXPECT_TRUE(throws_input_error(parse_n(npy(ok, d8, 1, 1)), {"version 1.1"}));
  EXPECT_TRUE(throws_input_error(parse_n(bytes_of(std::string("\x93NUMPY\x02\x00\x10\x00", 10))), {"header length missing"}));
  auto b = npy(ok, d8);
  b[8] = std::byte{0xff};
  b[9] = std::byte{0xff};
  EXPECT_TRUE(throws_input_error(parse_n(b), {"65535", "truncated"}));
}

TEST(MalformedNpy, HeaderDict) {
  const std::string d8(8, '\0');
  auto bad = [&](std::string_view dict, std::initializer_list<std::string_view> words) {
    return throws_input_error(parse_n(npy(dict, d8)), words);
  };
  EXPECT_TRUE(bad("{'descr': '<f8', 'shape': (1,), }", {"lacks 'fortran_order'"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", {"key 'x'"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", {"'descr' twice"}));
  EXPECT_TRUE(bad("{'descr': '<u1', 'fortran_order': False, 'shape': (8,), }", {"'<u1'", "f2, f4, f8, i4 or i8"}));
  EXPECT_TRUE(bad("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", {"unsupported dtype descr '<c16'"}));
  EXPECT_TRUE(bad("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }", {"quoted string"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': False, 'shape': (1), }", {"needs a comma"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", {"non-negative integers"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }", {"True or False"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", {"too large"}));
  EXPECT_TRUE(bad("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), } x", {"end with spaces and a newline"}));
  EXPECT_TRUE(bad("{'descr': '<f8' 'fortran_order': False, 'shape': (1,), }", {"expected '}'"}));
  // Without the final newline.
  std::string s = "\x93NUMPY\x01";
  s += '\0';
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  put_le(s, dict.size(), 2);
  EXPECT_TRUE(throws_input_error(parse_n(bytes_of(s + dict + d8)), {"newline"}));
}

TEST(MalformedNpy, DataSize) {
  const char* dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  EXPECT_TRUE(throws_input_error(parse_n(npy(dict, std::string(20, '\0'))),
                                 {"bad.npy", "holds 20 data bytes", "'<f4' x shape [2, 3] needs 6 x 4 = 24", "truncated"}));
  EXPECT_TRUE(throws_input_error(parse_n(npy(dict, std::string(28, '\0'))), {"holds 28 data bytes"}));
  std::string big;
  put_le(big, std::uint64_t{1} << 60, 8);
  EXPECT_TRUE(throws_input_error(parse_n(npy("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", big)),
                                 {"element 0", "2^53"}));
  // Big-endian int64 2^53 exactly is fine.
  std::string be("\x00\x20\x00\x00\x00\x00\x00\x00", 8);
  EXPECT_EQ(parse_npy(npy("{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }", be), "ok").values[0],
            9007199254740992.0);
}

// ---------------------------------------------------------------- npz

// Builds zip archives piece by piece, so each piece can lie.
struct Zip {
  struct Entry {
    std::string name;
    std::uint16_t flags = 0, method = 0;
    std::uint32_t crc = 0;
    std::uint64_t compressed = 0, uncompressed = 0, offset = 0;
  };
  std::string bytes;
  std::vector<Entry> entries;

  static std::uint32_t crc(std::string_view s) {
    return static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
  }
  static std::string deflate_raw(std::string_view s) {
    z_stream zs{};
    deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&zs, s.size()), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
    zs.avail_in = static_cast<uInt>(s.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
  }
  // Adds a local header + payload and returns its directory entry (which the caller may alter).
  Entry& add(std::string name, std::string_view content, bool deflated = false) {
    const std::string payload = deflated ? deflate_raw(content) : std::string(content);
    Entry e{std::move(name), 0, static_cast<std::uint16_t>(deflated ? 8 : 0), crc(content), payload.size(),
            content.size(), bytes.size()};
    local(e);
    bytes += payload;
    entries.push_back(e);
    return entries.back();
  }
  void local(const Entry& e) {
    put_le(bytes, 0x04034b50, 4);
    put_le(bytes, 20, 2);
    put_le(bytes, e.flags, 2);
    put_le(bytes, e.method, 2);
    put_le(bytes, 0, 4);
    put_le(bytes, e.crc, 4);
    put_le(bytes, e.compressed, 4);
    put_le(bytes, e.uncompressed, 4);
    put_le(bytes, e.name.size(), 2);
    put_le(bytes, 0, 2);
    bytes += e.name;
  }
  // tail goes between the members and the directory, before_end between the directory and the end record.
  std::vector<std::byte> finish(std::string_view tail = {}, std::string_view before_end = {}) const {
    std::string s = bytes, cd;
    for (const Entry& e : entries) {
      put_le(cd, 0x02014b50, 4);
      put_le(cd, 20, 2);
      put_le(cd, 20, 2);
      put_le(cd, e.flags, 2);
      put_le(cd, e.method, 2);
      put_le(cd, 0, 4);
      put_le(cd, e.crc, 4);
      put_le(cd, e.compressed, 4);
      put_le(cd, e.uncompressed, 4);
      put_le(cd, e.name.size(), 2);
      put_le(cd, 0, 2);
      put_le(cd, 0, 2);
      put_le(cd, 0, 2);
      put_le(cd, 0, 2);
      put_le(cd, 0, 4);
      put_le(cd, e.offset, 4);
      cd += e.name;
    }
    const std::size_t cd_offset = s.size();
    s += tail;
    s += cd;
    s += before_end;
    put_le(s, 0x06054b50, 4);
    put_le(s, 0, 4);
    put_le(s, entries.size(), 2);
    put_le(s, entries.size(), 2);
    put_le(s, cd.size(), 4);
    put_le(s, cd_offset + tail.size(), 4);
    put_le(s, 0, 2);
    return bytes_of(s);
  }
};

std::string small_npy() {
  return test::string_of(serialize_npy(Tensor{DType::F32, {2}, {1.0, 2.0}}));
}

auto parse_z(std::vector<std::byte> b) {
  return [b = std::move(b)] { parse_npz(b, "bad.npz"); };
}

TEST(MalformedNpz, Archive) {
  Zip ok;
  ok.add("q.npy", small_npy());
  ok.add("k.npy", small_npy(), true);
  EXPECT_EQ(parse_npz(ok.finish(), "ok").tensors.size(), 2u);

  EXPECT_TRUE(throws_input_error(parse_z(bytes_of("not a zip at all, just some text here")), {"bad.npz", "no end-of-central-directory"}));
  const auto full = ok.finish();
  EXPECT_TRUE(throws_input_error(parse_z({full.begin(), full.end() - 5}), {"no end-of-central-directory", "truncated"}));
  auto cut = full;  // drop bytes from the middle: the directory no longer ends at the end record
  cut.erase(cut.begin() + 40, cut.begin() + 50);
  EXPECT_TRUE(throws_input_error(parse_z(cut), {"bad.npz"}));

  std::string locator;
  put_le(locator, 0x07064b50, 4);
  locator += std::string(16, '\0');
  Zip z64 = ok;
  EXPECT_TRUE(throws_input_error(parse_z(z64.finish({}, locator)), {"zip64", "not supported"}));
}

TEST(MalformedNpz, Members) {
  {
    Zip z;
    z.add("q.npy", small_npy()).crc ^= 1;
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"bad.npz", "member 'q.npy'", "disagree"}));
    z.bytes[14] ^= 1;  // now the local header agrees: the data no longer does
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q'", "CRC-32", "corrupt"}));
  }
  {
    Zip z;
    z.add("q.npy", small_npy());
    z.bytes[z.bytes.size() - 1] ^= 0x40;  // flip a data bit
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q' (member q.npy)", "CRC-32"}));
  }
  {
    Zip z;
    z.add("q.npy", small_npy()).name = "k.npy";
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"names a different file"}));
  }
  {
    Zip z;
    z.add("q.npy", small_npy());
    z.add("q.npy", small_npy());
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"member 'q.npy'", "twice"}));
  }
  {
    Zip z;
    z.add("notes.txt", "hello");
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"member 'notes.txt'", "not NAME.npy"}));
  }
  {
    Zip z;
    z.add("q.npy", "definitely not npy");
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"bad.npz: tensor 'q' (member q.npy)", "magic"}));
  }
  {
    Zip z;
    z.add("q.npy", small_npy()).method = 12;
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"compression method 12"}));
  }
  {
    Zip z;
    auto& e = z.add("q.npy", small_npy());
    e.flags = 1;
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"encrypted"}));
  }
  {
    Zip z;
    z.add("q.npy", small_npy()).offset = 3;
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"no local file header at offset 3"}));
  }
  {
    Zip z;  // stored size lies: the data would run into the directory
    auto& e = z.add("q.npy", small_npy());
    e.compressed = e.uncompressed = 100000;
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"disagree"}));
  }
  {
    Zip z;  // a member whose local header sits inside another member's stored data
    const std::string inner_npy = small_npy();
    Zip inner;
    inner.add("k.npy", inner_npy);
    z.add("q.npy", inner.bytes);
    Zip::Entry k = inner.entries[0];
    k.offset = z.entries[0].offset + 30 + 5;  // q's data begins after its 30-byte header and "q.npy"
    z.entries.push_back(k);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"'q.npy' and 'k.npy' overlap"}));
  }
}

TEST(MalformedNpz, Deflate) {
  const std::string content = small_npy();
  {
    Zip z;  // declares far more than deflate can make of its bytes: refused before inflating
    auto& e = z.add("q.npy", content, true);
    e.uncompressed = 4000000000u;
    z.bytes.clear();
    z.local(e);
    z.bytes += Zip::deflate_raw(content);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q'", "decompression bomb"}));
  }
  {
    // A real bomb: 50 MB of zeros in ~50 KB, declaring only 1000 bytes.
    const std::string zeros(50'000'000, '\0');
    Zip z;
    auto& e = z.add("q.npy", zeros, true);
    e.uncompressed = 1000;
    z.bytes.clear();
    z.local(e);
    z.bytes += Zip::deflate_raw(zeros);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"more than the 1000 bytes it declares"}));
  }
  {
    Zip z;  // declares more than it inflates to
    auto& e = z.add("q.npy", content, true);
    e.uncompressed = content.size() + 10;
    z.bytes.clear();
    z.local(e);
    z.bytes += Zip::deflate_raw(content);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"inflates to", "but declares"}));
  }
  {
    Zip z;  // garbage where deflate data should be
    std::string garbage(40, '\xff');
    Zip::Entry e{"q.npy", 0, 8, Zip::crc(content), garbage.size(), content.size(), 0};
    z.local(e);
    z.bytes += garbage;
    z.entries.push_back(e);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q'", "corrupt deflate data"}));
  }
  {
    Zip z;  // deflate stream cut short
    std::string deflated = Zip::deflate_raw(content);
    deflated.resize(deflated.size() / 2);
    Zip::Entry e{"q.npy", 0, 8, Zip::crc(content), deflated.size(), content.size(), 0};
    z.local(e);
    z.bytes += deflated;
    z.entries.push_back(e);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q'"}));
  }
  {
    Zip z;  // metadata must be an object of strings
    z.add("q.npy", content);
    z.add("__metadata__.json", R"({"scale": 1})");
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"member '__metadata__.json'", "must be a string"}));
  }
}

// Issue 11: an honest member too large for the memory limit is refused from its npy header, before it is
// inflated; a member whose header disagrees with its declared size likewise.
TEST(MalformedNpz, SizesCheckedBeforeInflating) {
  const std::vector<std::byte> npy = serialize_npy(Tensor{DType::F32, {1 << 20}, std::vector<double>(1 << 20, 0.0)});
  const std::string content(reinterpret_cast<const char*>(npy.data()), npy.size());
  {
    Zip z;
    z.add("q.npy", content, true);
    const std::vector<std::byte> archive = z.finish();
    set_memory_limit(std::uint64_t{4} << 20);  // the member needs 4 MiB inflated and 8 MiB as doubles
    const bool refused = throws_input_error(parse_z(archive), {"tensor 'q'", "above the memory limit", "[1048576]"});
    set_memory_limit(0);  // back to the default
    EXPECT_TRUE(refused);
    EXPECT_EQ(parse_npz(archive, "ok").tensors.at("q").values.size(), std::size_t{1} << 20);
  }
  {
    Zip z;  // a header for 1 << 20 floats in a member that declares 100 bytes fewer
    auto& e = z.add("q.npy", content, true);
    e.uncompressed -= 100;
    z.bytes.clear();
    z.local(e);
    z.bytes += Zip::deflate_raw(content);
    EXPECT_TRUE(throws_input_error(parse_z(z.finish()), {"tensor 'q'", "its npy header", "needs"}));
  }
}

TEST(MalformedFiles, DevicesAreRefusedNotRead) {
  EXPECT_TRUE(throws_input_error([] { read_file_bytes("/dev/zero"); }, {"/dev/zero", "not a regular file"}));
}

// ---------------------------------------------------------------- writing

TEST(MalformedWrite, RefusedTensors) {
  TensorFile f;
  f.tensors["h"] = Tensor{DType::BF16, {1}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_npz(f, {}, "out.npz"); }, {"out.npz", "tensor 'h'", "bf16 cannot be stored in .npy"}));
  f.tensors.clear();
  f.tensors["n"] = Tensor{DType::I32, {2}, {1.0, 1.5}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"tensor 'n'", "element 1 is 1.5", "not an integer"}));
  f.tensors["n"] = Tensor{DType::I32, {1}, {2147483648.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"outside the range"}));
  f.tensors["n"] = Tensor{DType::I64, {1}, {18014398509481984.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"outside the range", "I64"}));
  f.tensors["n"] = Tensor{DType::I64, {1}, {std::nan("")}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"not an integer"}));
  f.tensors["n"] = Tensor{DType::F32, {2, 2}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"holds 1 values but shape [2, 2] has 4"}));
  f.tensors["n"] = Tensor{DType::F32, {-1}, {}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"negative"}));
  f.tensors.clear();
  f.tensors["__metadata__"] = Tensor{DType::F32, {}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"__metadata__"}));
  f.tensors.clear();
  f.tensors[std::string("bad\xff")] = Tensor{DType::F32, {}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { serialize_safetensors(f, "o"); }, {"UTF-8"}));
  EXPECT_TRUE(throws_input_error([&] { serialize_npy(Tensor{DType::F32, {}, {1.0}}, {false, 4, false, false}); },
                                 {"version 4"}));
}

// ---------------------------------------------------------------- every truncation, many flips

// Truncations and single-byte changes of valid files: each parse either succeeds or is an InputError.
template <class Parse>
void mutate_all(const std::vector<std::byte>& valid, Parse parse) {
  for (std::size_t n = 0; n < valid.size(); ++n) {
    const std::vector<std::byte> cut(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(parse(cut), InputError) << "prefix of " << n << " bytes";
  }
  std::mt19937 rng(5);
  for (std::size_t i = 0; i < valid.size(); ++i)
    for (int change : {1, 0x80, static_cast<int>(rng() & 0xff)}) {
      std::vector<std::byte> b = valid;
      b[i] ^= static_cast<std::byte>(change == 0 ? 1 : change);
      try {
        parse(b);
      } catch (const InputError&) {
      }  // anything else escapes and fails the test
    }
}

TEST(Mutations, NeverAnythingButInputError) {
  TensorFile f;
  f.tensors["a"] = Tensor{DType::F16, {2, 2}, {1, 2, 3, 4}};
  f.tensors["b"] = Tensor{DType::I64, {3}, {1, -2, 3}};
  f.metadata["scale"] = "0.5";
  mutate_all(serialize_safetensors(f), [](const auto& b) { return parse_safetensors(b, "m"); });
  mutate_all(serialize_npy(f.tensors["a"], {false, 0, true, true}), [](const auto& b) { return parse_npy(b, "m"); });
  mutate_all(serialize_npz(f, {true}), [](const auto& b) { return parse_npz(b, "m"); });
  mutate_all(serialize_npz(f, {false}), [](const auto& b) { return parse_npz(b, "m"); });
}

}  // namespace
}  // namespace dplr
