// The pieces of issue 13 below the CLI: --shard's parsing and partition (verify/shard.hpp), case files
// (verify/case_file.hpp: a round trip, and every malformed field refused), and the property sweep's
// generators (generators/rapidcheck.hpp: every drawn case is one the kernels and the reference take).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <tuple>

#include "core/error.hpp"
#include "generators/rapidcheck.hpp"
#include "io/tensor_io.hpp"
#include "verify/case_file.hpp"
#include "verify/shard.hpp"

namespace dplr {
namespace {

TEST(Shard, ParsesIOverN) {
  const Shard s = parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(shard_name(s), "2/5");
  EXPECT_TRUE(parse_shard("0/1").whole());
}

TEST(Shard, RefusesWhatIsNotIOverN) {
  for (const char* text : {"5/5", "6/5", "1/0", "-1/4", "1/-4", "a/4", "1/b", "1/4/2", "1", "", "/4", "1/", " 1/4", "1/4 "}) {
    try {
      parse_shard(text);
      ADD_FAILURE() << "'" << text << "' was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--shard '"), std::string::npos) << e.what();
    }
  }
}

RC_GTEST_PROP(Shard, NShardsHoldEveryPositionExactlyOnce, ()) {
  const int count = *rc::gen::inRange(1, 33);
  const std::int64_t position = *rc::gen::inRange<std::int64_t>(0, 100000);
  int holders = 0;
  for (int i = 0; i < count; ++i) holders += Shard{i, count}.holds(position);
  RC_ASSERT(holders == 1);
}

class CaseFileTest : public ::testing::Test {
 protected:
  // One folder per test: ctest runs the tests of this fixture in parallel.
  std::filesystem::path folder = std::filesystem::temp_directory_path() /
                                 (std::string("dplr-case-file-") +
                                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
  void SetUp() override { std::filesystem::remove_all(folder); }
  void TearDown() override { std::filesystem::remove_all(folder); }

  CaseSpec spec() const {
    CaseSpec s;
    s.shape = {1, 19, 2, 3, 5};
    s.cu_seqlens = {0, 0, 1, 19};
    s.dtype = DType::BF16;
    s.distribution = "strong-decay";
    s.seed = 77;
    s.with_backward = false;
    return s;
  }
  std::filesystem::path write(const std::string& kernel, int chunk_size) const {
    return write_case_file(folder, "gpu chunk C16: a case/with odd*chars", generate_case(spec()), spec(), kernel,
                           chunk_size, "gpu chunk C16: fail", "test");
  }
  // The file with one metadata entry set (or erased when `value` is empty).
  std::filesystem::path edited(const std::string& key, const std::string& value) const {
    TensorFile file = read_tensor_file(write("chunk", 16));
    if (value.empty()) file.metadata.erase(key);
    else file.metadata[key] = value;
    const auto path = folder / "edited.safetensors";
    write_tensor_file(path, file);
    return path;
  }
};

TEST_F(CaseFileTest, RoundTrips) {
  const auto path = write("chunk", 16);
  EXPECT_EQ(path.parent_path(), folder);
  EXPECT_EQ(path.filename().string().find_first_of(" :/*"), std::string::npos) << path;
  const CaseFile file = read_case_file(path);
  EXPECT_EQ(file.kernel, "chunk");
  EXPECT_EQ(file.chunk_size, 16);
  EXPECT_EQ(file.spec.distribution, "strong-decay");
  EXPECT_EQ(file.spec.seed, 77u);
  EXPECT_EQ(file.spec.cu_seqlens, spec().cu_seqlens);
  EXPECT_EQ(file.spec.dtype, DType::BF16);
  EXPECT_EQ(file.failed, "gpu chunk C16: fail");
  const DplrProblem again = generate_case(spec());
  EXPECT_EQ(file.problem.q.values, again.q.values);
  EXPECT_EQ(file.problem.gk.values, again.gk.values);
  EXPECT_EQ(file.problem.scale, again.scale);
  EXPECT_NO_THROW(read_case_file(write("recurrent", 0)));
  EXPECT_NO_THROW(read_case_file(write("cpu", 32)));
}

TEST_F(CaseFileTest, RefusesMalformedMetadata) {
  const std::vector<std::tuple<std::string, std::string, std::string>> planted = {
      {"kernel", "", "metadata 'kernel' is missing"},
      {"kernel", "tensor-cores", "metadata 'kernel' is 'tensor-cores'"},
      {"chunk_size", "", "metadata 'chunk_size' is missing"},
      {"chunk_size", "8", "'chunk_size' is 8 for kernel chunk"},
      {"chunk_size", "16x", "'chunk_size' is '16x'"},
      {"spec", "{not json", "metadata 'spec' is not the JSON"},
      {"spec", "{\"seed\": 1}", "metadata 'spec' is not the JSON"},
  };
  for (const auto& [key, value, expected] : planted) {
    const auto path = edited(key, value);
    try {
      read_case_file(path);
      ADD_FAILURE() << key << "=" << value << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(read_case_file(write("recurrent", 16)), InputError);
  EXPECT_THROW(read_case_file(write("cpu", 7)), InputError);
}

// Every case the GPU generator draws is one the kernels take (gpu_harness: q..b in one dtype of bf16, fp16,
// fp32; gk fp32 or that dtype; reverse only for the recurrent kernels; varlen with B = 1; do for the backward
// kernels only) and keeps the
// reference's cost bounded; the small ones are generated to be sure the spec is valid.
RC_GTEST_PROP(SweepGenerators, GpuCasesAreOnesTheKernelsTake, (const std::uint64_t key)) {
  const rc::Random random(rc::Random::Key{key, key * 31, 1, 0});
  const SweepCase c = gen_gpu_sweep_case()(random, rc::kNominalSize).value();
  const auto& s = c.spec.shape;
  RC_ASSERT(c.kernel == "chunk" || c.kernel == "chunk-fused" || c.kernel == "recurrent" || c.kernel == "chunk-bwd" ||
            c.kernel == "recurrent-bwd");
  const bool recurrent = c.kernel == "recurrent" || c.kernel == "recurrent-bwd";
  const bool backward = c.kernel == "chunk-bwd" || c.kernel == "recurrent-bwd";
  const bool chunk_size_ok =
      recurrent ? c.chunk_size == 0 : (c.chunk_size == 16 || c.chunk_size == 32 || c.chunk_size == 64);
  RC_ASSERT(chunk_size_ok);
  RC_ASSERT(!c.spec.reverse || recurrent);
  RC_ASSERT(c.spec.dtype == DType::BF16 || c.spec.dtype == DType::F16 || c.spec.dtype == DType::F32);
  RC_ASSERT(c.spec.gk_dtype == DType::F32 || c.spec.gk_dtype == c.spec.dtype);
  RC_ASSERT(s.B >= 1 && s.T >= 1 && s.T <= 3500 && s.H >= 1 && s.H <= 4);
  RC_ASSERT(s.K >= 1 && s.K <= 128 && s.V >= 1 && s.V <= 128);
  RC_ASSERT(s.B * s.T * s.H * s.K * s.V <= (std::int64_t{1} << (backward ? 23 : 25)));
  if (!c.spec.cu_seqlens.empty()) {
    RC_ASSERT(s.B == 1);
    RC_ASSERT(c.spec.cu_seqlens.front() == 0 && c.spec.cu_seqlens.back() == s.T);
    RC_ASSERT(std::is_sorted(c.spec.cu_seqlens.begin(), c.spec.cu_seqlens.end()));
  }
  RC_ASSERT(c.spec.with_backward == backward);  // the backward kernels need do (and take dht)
  if (s.B * s.T * s.H * std::max(s.K, s.V) <= 200000) generate_case(c.spec);
}

// The CPU cases stay small (the reference at double-double on few cores) and are valid.
RC_GTEST_PROP(SweepGenerators, CpuCasesAreSmallAndValid, (const std::uint64_t key)) {
  const rc::Random random(rc::Random::Key{key, 0, 0, 0});
  const SweepCase c = gen_cpu_sweep_case()(random, rc::kNominalSize).value();
  const auto& s = c.spec.shape;
  RC_ASSERT(c.kernel == "cpu");
  RC_ASSERT(s.B * s.T * s.H * s.K * s.V <= 2 * 160 * 3 * 6 * 6);
  generate_case(c.spec);
}

// A draw is a function of its key alone: what makes --property deterministic and shardable.
TEST(SweepGenerators, TheSameKeyDrawsTheSameCase) {
  for (std::uint64_t position = 0; position < 50; ++position) {
    const rc::Random key(rc::Random::Key{7, position, 1, 0});
    std::ostringstream a, b;
    showValue(gen_gpu_sweep_case()(key, rc::kNominalSize).value(), a);
    showValue(gen_gpu_sweep_case()(key, rc::kNominalSize).value(), b);
    EXPECT_EQ(a.str(), b.str());
  }
}

}  // namespace
}  // namespace dplr
