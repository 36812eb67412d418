// Round trips through every format: each dtype, shape kind (scalar, empty, 1-d, 4-d), npy version, memory
// order and byte order, written then read back bit for bit; plus the exact bytes numpy's format expects,
// and rounding on write (values not in the dtype round to nearest even, directly from double).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "io/tensor_io.hpp"
#include "tests/io/io_test_util.hpp"

namespace dplr {
namespace {

using test::make_tensor;
using test::same_tensor;

const std::vector<std::vector<std::int64_t>> kShapes = {{}, {0}, {7}, {2, 3, 4}, {2, 0, 3}, {1, 3, 2, 5}};

TEST(SafetensorsRoundTrip, EveryDtypeAndShape) {
  TensorFile file;
  int i = 0;
  for (DType dtype : test::kAllDTypes)
    for (const auto& shape : kShapes) {
      ++i;
      file.tensors[std::string(dtype_name(dtype)) + "_" + std::to_string(i)] = make_tensor(dtype, shape, 100 + i);
    }
  file.metadata = {{"scale", "0.125"}, {"producer", "test \"quoted\" ünïcode"}};
  const auto bytes = serialize_safetensors(file);
  // Header padded to 8 bytes, so every tensor's data stays aligned.
  std::uint64_t header_size = 0;
  for (int b = 7; b >= 0; --b) header_size = header_size << 8 | std::to_integer<std::uint64_t>(bytes[b]);
  EXPECT_EQ(header_size % 8, 0u);
  const TensorFile back = parse_safetensors(bytes, "roundtrip.safetensors");
  EXPECT_EQ(back.metadata, file.metadata);
  ASSERT_EQ(back.tensors.size(), file.tensors.size());
  for (const auto& [name, tensor] : file.tensors) EXPECT_TRUE(same_tensor(tensor, back.tensors.at(name))) << name;
}

TEST(SafetensorsRoundTrip, EmptyFileAndKnownBytes) {
  EXPECT_TRUE(parse_safetensors(serialize_safetensors({}), "empty").tensors.empty());
  TensorFile file;
  file.tensors["x"] = Tensor{DType::F32, {2}, {1.0, -2.0}};
  EXPECT_EQ(test::string_of(serialize_safetensors(file)),
            std::string("\x38\0\0\0\0\0\0\0", 8) +
                R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )" +
                std::string("\0\0\x80\x3f\0\0\0\xc0", 8));
}

struct NpyCase {
  DType dtype;
  int version;
  bool fortran, big_endian;
};

class NpyRoundTrip : public ::testing::TestWithParam<NpyCase> {};

TEST_P(NpyRoundTrip, EveryShape) {
  const NpyCase c = GetParam();
  const TensorWriteOptions options{false, c.version, c.fortran, c.big_endian};
  for (const auto& shape : kShapes) {
    const Tensor t = make_tensor(c.dtype, shape, 3);
    const auto bytes = serialize_npy(t, options);
    EXPECT_EQ(std::to_integer<int>(bytes[6]), c.version);
    const std::size_t prefix = c.version == 1 ? 10 : 12;
    // The header is short here, so the low two bytes of the length hold it in every version.
    const std::size_t header = std::to_integer<std::size_t>(bytes[8]) | std::to_integer<std::size_t>(bytes[9]) << 8;
    EXPECT_EQ((prefix + header) % 64, 0u) << "numpy aligns the data to 64 bytes";
    EXPECT_TRUE(same_tensor(t, parse_npy(bytes, "roundtrip.npy"))) << shape_string(shape);
  }
}

std::vector<NpyCase> all_npy_cases() {
  std::vector<NpyCase> cases;
  for (DType dtype : test::kNpyDTypes)
    for (int version : {1, 2, 3})
      for (bool fortran : {false, true})
        for (bool big_endian : {false, true}) cases.push_back({dtype, version, fortran, big_endian});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(All, NpyRoundTrip, ::testing::ValuesIn(all_npy_cases()), [](const auto& info) {
  const NpyCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_v" + std::to_string(c.version) + (c.fortran ? "_F" : "_C") +
         (c.big_endian ? "_BE" : "_LE");
});

TEST(Npy, HeaderAndFortranBytesAsNumpyWritesThem) {
  const Tensor t{DType::I32, {2, 3}, {0, 1, 2, 3, 4, 5}};
  const std::string c = test::string_of(serialize_npy(t));
  const std::string dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
  ASSERT_EQ(c.substr(0, 10), std::string("\x93NUMPY\x01\x00\x76\x00", 10));
  EXPECT_EQ(c.substr(10, dict.size()), dict);
  EXPECT_EQ(c[127], '\n');
  EXPECT_EQ(c.size(), 128u + 24u);
  // Fortran order: the first index runs fastest.
  const std::string f = test::string_of(serialize_npy(t, {false, 0, true, true}));
  EXPECT_NE(f.find("'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }"), std::string::npos);
  std::string expected;
  for (int v : {0, 3, 1, 4, 2, 5}) expected += std::string("\0\0\0", 3) + static_cast<char>(v);
  EXPECT_EQ(f.substr(128), expected);
  EXPECT_NE(test::string_of(serialize_npy(Tensor{DType::F64, {5}, {1, 2, 3, 4, 5}})).find("'shape': (5,), }"),
            std::string::npos);
  EXPECT_NE(test::string_of(serialize_npy(Tensor{DType::F64, {}, {1}})).find("'shape': (), }"), std::string::npos);
}

TEST(Npy, LongHeaderPicksVersion2) {
  Tensor t{DType::F32, std::vector<std::int64_t>(25000, 1), {0.5}};
  const auto bytes = serialize_npy(t);
  EXPECT_EQ(std::to_integer<int>(bytes[6]), 2);
  EXPECT_TRUE(same_tensor(t, parse_npy(bytes, "long.npy")));
  EXPECT_TRUE(test::throws_input_error([&] { serialize_npy(t, {false, 1, false, false}); }, {"version 2"}));
}

TEST(NpzRoundTrip, StoredAndDeflatedWithMetadata) {
  for (bool compress : {false, true})
    for (bool fortran : {false, true}) {
      TensorFile file;
      int i = 0;
      for (DType dtype : test::kNpyDTypes)
        for (const auto& shape : kShapes) {
          ++i;
          file.tensors[fmt::format("t{}", i)] = make_tensor(dtype, shape, 100 + i);
        }
      file.tensors["big"] = make_tensor(DType::F64, {300, 70}, 9);  // deflate needs several output rounds
      file.tensors["zeros"] = Tensor{DType::F32, {100000}, std::vector<double>(100000, 0.0)};
      file.metadata = {{"scale", "0.125"}, {"reverse", "false"}};
      const auto bytes = serialize_npz(file, {compress, 0, fortran, false});
      const auto stored = serialize_npz(file, {false, 0, fortran, false});
      const TensorFile back = parse_npz(bytes, "roundtrip.npz");
      EXPECT_EQ(back.metadata, file.metadata);
      ASSERT_EQ(back.tensors.size(), file.tensors.size());
      for (const auto& [name, tensor] : file.tensors) EXPECT_TRUE(same_tensor(tensor, back.tensors.at(name))) << name;
      if (compress) {
        EXPECT_LT(bytes.size() + 300000, stored.size()) << "400 kB of zeros should deflate to almost nothing";
      }
    }
}

TEST(Rounding, WriteRoundsToNearestEvenFromDouble) {
  // 1 + 2^-11 + 2^-40 is just above the F16 halfway point between 1 and 1 + 2^-10: rounding through float
  // first would land on the tie and round down to 1.
  const double above_tie = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  const double tie = 1.0 + std::ldexp(1.0, -11);
  const double bf16_above_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    const std::vector<double> in = {above_tie, tie, bf16_above_tie, 0.1, -1e-30, 1e300, std::ldexp(1.0, -160)};
    TensorFile file;
    file.tensors["x"] = Tensor{dtype, {static_cast<std::int64_t>(in.size())}, in};
    const Tensor back = parse_safetensors(serialize_safetensors(file), "r").tensors.at("x");
    for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(back.values[i], round_to_dtype(in[i], dtype)) << i;
  }
  EXPECT_EQ(round_to_dtype(above_tie, DType::F16), 1.0 + std::ldexp(1.0, -10));
  const Tensor back = parse_npy(serialize_npy(Tensor{DType::F16, {1}, {above_tie}}), "r");
  EXPECT_EQ(back.values[0], 1.0 + std::ldexp(1.0, -10));
}

}  // namespace
}  // namespace dplr
