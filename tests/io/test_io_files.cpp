// Tensor files on disk: format by extension or folder, write then read for each, the errors a user meets
// (missing file, unknown extension, wrong count for .npy), and the real flash-linear-attention recordings
// in ../shared/data/recorded checked against what its README says they hold.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <unistd.h>

#include "io/tensor_io.hpp"
#include "tests/io/io_test_util.hpp"

namespace dplr {
namespace {

namespace fs = std::filesystem;
using test::throws_input_error;

class TensorFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dplr_io_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TensorFile sample(bool with_bf16) {
  TensorFile f;
  f.tensors["q"] = test::make_tensor(DType::F32, {1, 4, 2, 3}, 1);
  f.tensors["gk"] = test::make_tensor(DType::F16, {1, 4, 2, 3}, 2);
  f.tensors["cu_seqlens"] = Tensor{DType::I64, {3}, {0, 2, 4}};
  if (with_bf16) f.tensors["k"] = test::make_tensor(DType::BF16, {1, 4, 2, 3}, 3);
  f.metadata = {{"scale", "0.5"}, {"reverse", "true"}};
  return f;
}

void expect_same(const TensorFile& expected, const TensorFile& actual) {
  EXPECT_EQ(expected.metadata, actual.metadata);
  ASSERT_EQ(expected.tensors.size(), actual.tensors.size());
  for (const auto& [name, t] : expected.tensors) EXPECT_TRUE(test::same_tensor(t, actual.tensors.at(name))) << name;
}

TEST_F(TensorFiles, EachFormatByPath) {
  EXPECT_EQ(tensor_file_format(dir_ / "a.safetensors"), TensorFileFormat::Safetensors);
  EXPECT_EQ(tensor_file_format(dir_ / "a.npz"), TensorFileFormat::Npz);
  EXPECT_EQ(tensor_file_format(dir_ / "a.npy"), TensorFileFormat::Npy);
  EXPECT_EQ(tensor_file_format(dir_), TensorFileFormat::NpyFolder);
  EXPECT_EQ(tensor_file_format(fs::path(dir_.string() + "/new/")), TensorFileFormat::NpyFolder);
  EXPECT_TRUE(throws_input_error([&] { tensor_file_format(dir_ / "a.pt"); }, {"a.pt", "unknown tensor file type '.pt'"}));

  const TensorFile all = sample(true), no_bf16 = sample(false);
  write_tensor_file(dir_ / "a.safetensors", all);
  expect_same(all, read_tensor_file(dir_ / "a.safetensors"));
  for (bool compress : {false, true}) {
    write_tensor_file(dir_ / "a.npz", no_bf16, {compress, 2, true, true});
    expect_same(no_bf16, read_tensor_file(dir_ / "a.npz"));
  }
  write_tensor_file(dir_ / "case", no_bf16, {false, 3, false, false});
  expect_same(no_bf16, read_tensor_file(dir_ / "case"));
  EXPECT_TRUE(fs::exists(dir_ / "case" / "q.npy"));
  EXPECT_TRUE(fs::exists(dir_ / "case" / "__metadata__.json"));
  EXPECT_FALSE(fs::exists(dir_ / "a.npz.partial"));

  TensorFile one;
  one.tensors["x"] = no_bf16.tensors.at("q");
  write_tensor_file(dir_ / "q.npy", one);
  const TensorFile back = read_tensor_file(dir_ / "q.npy");
  ASSERT_EQ(back.tensors.count("q"), 1u) << "an .npy file's tensor is named after the file";
  EXPECT_TRUE(test::same_tensor(one.tensors.at("x"), back.tensors.at("q")));
}

TEST_F(TensorFiles, UserErrors) {
  EXPECT_TRUE(throws_input_error([&] { read_tensor_file(dir_ / "missing.safetensors"); },
                                 {"missing.safetensors", "cannot open", "No such file"}));
  EXPECT_TRUE(throws_input_error([&] { write_tensor_file(dir_ / "two.npy", sample(false)); },
                                 {"two.npy", "exactly one tensor", "3 were given"}));
  TensorFile one;
  one.tensors["x"] = Tensor{DType::F32, {}, {1.0}};
  one.metadata["a"] = "b";
  EXPECT_TRUE(throws_input_error([&] { write_tensor_file(dir_ / "m.npy", one); }, {"cannot hold metadata"}));
  EXPECT_TRUE(throws_input_error([&] { write_tensor_file(dir_ / "bf.npz", sample(true)); },
                                 {"bf.npz", "tensor 'k'", "bf16"}));
  EXPECT_FALSE(fs::exists(dir_ / "bf.npz"));
  EXPECT_TRUE(throws_input_error([&] { read_tensor_file(dir_); }, {"holds no NAME.npy files"}));
  TensorFile slash;
  slash.tensors["a/b"] = Tensor{DType::F32, {}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { write_tensor_file(dir_ / "f", slash); }, {"'a/b'", "file name"}));
  // A folder with a stale tensor of another name is refused rather than mixed.
  write_tensor_file(dir_ / "g", sample(false));
  TensorFile other;
  other.tensors["z"] = Tensor{DType::F32, {}, {1.0}};
  EXPECT_TRUE(throws_input_error([&] { write_tensor_file(dir_ / "g", other); }, {"already holds", ".npy"}));
  // A corrupt member of a folder names its file.
  std::ofstream(dir_ / "g" / "q.npy") << "garbage";
  EXPECT_TRUE(throws_input_error([&] { read_tensor_file(dir_ / "g"); }, {"q.npy", "magic"}));
}

// ---------------------------------------------------------------- real recordings

#ifndef DPLR_RECORDED_DIR
#define DPLR_RECORDED_DIR ""
#endif

struct Recording {
  const char* file;
  DType dtype;  // of q, k, v, a, b, o and the gradients of those
  bool backward;
};

class Recorded : public ::testing::TestWithParam<Recording> {};

// From ../shared/data/recorded/README.md: B=1, T=256, H=2, K=V=64; gk and h0 fp32; q, k, v, a, b in the
// file's dtype; ht is the fp32 state; the chunk files also hold do, dht and every gradient, each with its
// input's shape and dtype (do as o, dht as ht). Metadata: scale = 64^-1/2, producer, gpu.
TEST_P(Recorded, NamesDtypesShapesAsDocumented) {
  const Recording r = GetParam();
  const fs::path path = fs::path(DPLR_RECORDED_DIR) / r.file;
  if (!fs::exists(path)) GTEST_SKIP() << "recording not found: " << path << " (tests/data/recorded, or DPLR_RECORDED_DIR)";
  const TensorFile f = read_tensor_file(path);

  const std::vector<std::int64_t> btk = {1, 256, 2, 64}, state = {1, 2, 64, 64};
  std::map<std::string, std::pair<DType, std::vector<std::int64_t>>> expected = {
      {"q", {r.dtype, btk}},        {"k", {r.dtype, btk}},       {"v", {r.dtype, btk}},   {"a", {r.dtype, btk}},
      {"b", {r.dtype, btk}},        {"gk", {DType::F32, btk}},   {"h0", {DType::F32, state}},
      {"o", {r.dtype, btk}},        {"ht", {DType::F32, state}}};
  if (r.backward) {
    for (const char* input : {"q", "k", "v", "a", "b", "gk", "h0"}) expected["d" + std::string(input)] = expected[input];
    expected["do"] = expected["o"];
    expected["dht"] = expected["ht"];
  }
  std::vector<std::string> names, expected_names;
  for (const auto& [name, t] : f.tensors) names.push_back(name);
  for (const auto& [name, t] : expected) expected_names.push_back(name);
  EXPECT_EQ(names, expected_names);
  for (const auto& [name, want] : expected) {
    if (!f.tensors.contains(name)) continue;
    const Tensor& t = f.tensors.at(name);
    EXPECT_EQ(dtype_name(t.dtype), dtype_name(want.first)) << name;
    EXPECT_EQ(t.shape, want.second) << name;
    EXPECT_EQ(static_cast<std::int64_t>(t.values.size()), t.numel()) << name;
    for (double v : t.values) ASSERT_TRUE(std::isfinite(v)) << name;
  }
  EXPECT_EQ(f.metadata.at("scale"), "0.125");
  EXPECT_TRUE(f.metadata.contains("producer"));
  EXPECT_TRUE(f.metadata.contains("gpu"));
  // gk = logsigmoid(.) is a decay: never positive.
  for (double v : f.tensors.at("gk").values) ASSERT_LE(v, 0.0);
  // b = -a exactly (the same rounding applies to both).
  const auto& a = f.tensors.at("a").values;
  const auto& b = f.tensors.at("b").values;
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(b[i], -a[i]) << i;
  // Written back and read again, nothing changes.
  expect_same(f, parse_safetensors(serialize_safetensors(f), "rewritten"));
}

INSTANTIATE_TEST_SUITE_P(Fla, Recorded,
                         ::testing::Values(Recording{"fla_chunk_default_bf16.safetensors", DType::BF16, true},
                                           Recording{"fla_chunk_default_fp16.safetensors", DType::F16, true},
                                           Recording{"fla_recurrent_default_bf16.safetensors", DType::BF16, false}),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           return name.substr(0, name.find('.'));
                         });

}  // namespace
}  // namespace dplr
