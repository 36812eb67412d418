// The fused recurrent backward (gpu::fused_recurrent_backward, through verify/gpu_runner's
// run_gpu_recurrent_backward) against the exact reference's analytic backward (reference/recurrent.hpp, double),
// on random inputs (tests/gpu/gpu_test_cases.hpp) with do ~ N(0, 1) in the inputs' dtype and dht ~ N(0, 1) fp32:
// H > 1 with differing heads, K, V in {32, 48, 60, 64, 100, 128} (V > 64: two V tiles and the tile-sum kernel), T = 1,
// T a multiple of the checkpoint interval (64) and not (T = 37, 129: a last segment of one token, 200, 300),
// varlen with empty and one-token sequences and with a sequence longer than a segment (both scratch layouts),
// h0 and dht present and absent, reverse, gk logsigmoid, U[-30, 0] and pinned at -30; fp32 / fp16 / bf16 inputs
// (gk fp32 with 16-bit inputs in some). Outputs are poisoned (NaN) before the run and must come back finite.
// Bars: relative RMSE <= 1e-6 for fp32 inputs; for 16-bit inputs dq, dk, dv, da, db (stored in the dtype) <= 1.3x
// the correctly rounded floor (the exact gradient rounded once to the dtype) and the fp32-stored dgk, dh0 <= 1e-5
// (test_gpu_forward's bar for the fp32 ht of 16-bit runs). Determinism: two runs give the same bits. A small
// GpuSanitize test runs every kernel once for compute-sanitizer; refusals need no device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"

#ifdef DPLR_NO_CUDA
TEST(GpuRecurrentBwd, Skipped) { GTEST_SKIP() << "built without CUDA (DPLR_ENABLE_CUDA=OFF): no GPU kernels to test"; }
#else
#include "gpu/dplr_gpu.hpp"
#include "tests/gpu/gpu_test_cases.hpp"
#include "verify/gpu_harness.hpp"
#include "verify/gpu_runner.hpp"

namespace {
using namespace dplr_gpu_test;  // DType, g = dplr::gpu, Case, make_problem, ...

struct BwdCase {
  Case c;
  bool dht = false;
  std::string name;
};

BwdCase bwd_case(Case c, bool dht) {
  BwdCase b{std::move(c), dht, ""};
  b.name = describe(b.c) + (dht ? " dht" : "");
  return b;
}

dplr::DplrProblem make_bwd_problem(const BwdCase& bc, std::uint64_t seed) {
  dplr::DplrProblem p = make_problem(bc.c, seed);
  std::mt19937_64 rng(seed ^ 0x5bd1e995u);
  std::normal_distribution<double> nd(0.0, 1.0);
  const DType dt = to_core(bc.c.dt);
  dplr::Tensor grad_o{dt, p.v.shape, std::vector<double>(p.v.values.size())};
  for (auto& x : grad_o.values) x = dplr::round_to_dtype(nd(rng), dt);
  p.grad_o = std::move(grad_o);
  if (bc.dht) {
    const std::int64_t N = p.num_sequences();
    dplr::Tensor dht{DType::F32, {N, bc.c.H, bc.c.K, bc.c.V}, std::vector<double>(N * bc.c.H * bc.c.K * bc.c.V)};
    for (auto& x : dht.values) x = dplr::round_to_dtype(nd(rng), DType::F32);
    p.grad_ht = std::move(dht);
  }
  return p;
}

dplr::ExactTensorMap exact_gradients(const dplr::DplrProblem& p) {
  dplr::ReferenceOptions opts{dplr::Precision{dplr::Arithmetic::Double, 0}};
  opts.backward = true;
  return dplr::run_reference(p, opts).tensors;
}

constexpr const char* kKeyGradients[] = {"dq", "dk", "dv", "da", "db"};  // stored in the inputs' dtype

// Every gradient the GPU returned against the exact one, under the case's bars (file header).
void expect_accurate(const dplr::TensorMap& gpu, const dplr::ExactTensorMap& exact, const BwdCase& bc) {
  const bool fp32 = bc.c.dt == g::ElemType::F32;
  const DType dt = to_core(bc.c.dt);
  std::vector<std::string> names(std::begin(kKeyGradients), std::end(kKeyGradients));
  names.push_back("dgk");
  // dh0 with or without h0 (the gradient at the initial state, a zero state where h0 is absent), as the chunk
  // backward returns it and the exact reference forms it.
  names.push_back("dh0");
  ASSERT_EQ(gpu.count("dh0"), 1u) << bc.name << ": dh0 is returned, with or without h0";
  std::printf("  %-56s", bc.name.c_str());
  for (const std::string& name : names) {
    ASSERT_TRUE(gpu.count(name)) << bc.name << ": the GPU backward returned no " << name;
    const std::vector<double>& x = gpu.at(name).values;
    const std::vector<double> ref = exact.at(name).rounded();
    ASSERT_EQ(x.size(), ref.size()) << bc.name << ": " << name << " size";
    ASSERT_EQ(count_bad(x), 0) << bc.name << ": " << name << " has unwritten or non-finite elements";
    const double err = dplr::rel_rmse(x, ref);
    const bool in_dtype = name != "dgk" && name != "dh0";
    double bar = 1e-6, floor = 0.0;
    if (!fp32 && in_dtype) {
      std::vector<double> rounded = ref;
      for (auto& v : rounded) v = dplr::round_to_dtype(v, dt);
      floor = dplr::rel_rmse(rounded, ref);
      bar = 1.3 * floor;
    } else if (!fp32) {
      bar = 1e-5;
    }
    if (floor > 0) std::printf(" %s %.2e(%.2fx)", name.c_str(), err, err / floor);
    else std::printf(" %s %.2e", name.c_str(), err);
    EXPECT_LE(err, bar) << bc.name << ": " << name << " rel RMSE " << err << " over the bar " << bar
                        << (floor > 0 ? " (1.3x the correctly rounded floor)" : "");
  }
  std::printf("\n");
}

std::vector<BwdCase> accuracy_cases() {
  using E = g::ElemType;
  return {
      bwd_case({"", 2, 37, 3, 64, 64, E::BF16, false, Gate::Fla, true, false, {}}, true),
      bwd_case({"", 1, 50, 2, 60, 100, E::F16, false, Gate::Strong, true, true, {}}, true),
      bwd_case({"", 2, 64, 2, 128, 128, E::F32, false, Gate::Strong, false, false, {}}, true),
      bwd_case({"", 2, 200, 2, 64, 64, E::F32, false, Gate::Fla, true, true, {}}, false),
      bwd_case({"", 1, 130, 2, 100, 100, E::F32, false, Gate::Strong, true, false, {}}, true),
      bwd_case({"", 1, 129, 1, 60, 60, E::F32, false, Gate::Pinned30, true, false, {}}, true),
      bwd_case({"", 1, 300, 1, 128, 64, E::BF16, false, Gate::Strong, false, true, {}}, true),
      bwd_case({"", 1, 80, 2, 64, 64, E::BF16, false, Gate::Pinned30, true, false, {}}, false),
      // T = 1
      bwd_case({"", 4, 1, 4, 64, 64, E::BF16, false, Gate::Fla, true, false, {}}, true),
      bwd_case({"", 3, 1, 2, 128, 128, E::F16, true, Gate::Fla, true, false, {}}, false),
      bwd_case({"", 2, 1, 2, 32, 48, E::F32, false, Gate::Strong, false, true, {}}, true),
      // varlen: a one-token sequence, empty ones, one longer than a segment; scratch by token (T < N min(P, T))
      bwd_case({"", 1, 100, 2, 100, 60, E::BF16, true, Gate::Fla, true, false, {0, 5, 40, 41, 100}}, true),
      bwd_case({"", 1, 100, 2, 64, 64, E::F32, false, Gate::Strong, true, true, {0, 0, 33, 34, 100}}, true),
      bwd_case({"", 1, 200, 2, 32, 48, E::F32, false, Gate::Fla, true, false, {0, 70, 70, 71, 200}}, false),
      // varlen, scratch per sequence (T >= N min(P, T)), the last sequence empty
      bwd_case({"", 1, 300, 2, 64, 64, E::BF16, true, Gate::Strong, false, true, {0, 100, 300, 300}}, true),
  };
}

TEST(GpuRecurrentBwd, MatchesExactBackward) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 12000;
  for (const BwdCase& bc : accuracy_cases()) {
    SCOPED_TRACE(bc.name);
    const dplr::DplrProblem p = make_bwd_problem(bc, ++seed);
    const dplr::ExactTensorMap exact = exact_gradients(p);
    expect_accurate(dplr::run_gpu_recurrent_backward(p), exact, bc);
  }
}

// Two runs give the same bits (no atomics; every sum in a fixed order), with one and with two V tiles.
TEST(GpuRecurrentBwd, Deterministic) {
  REQUIRE_DEVICE();
  using E = g::ElemType;
  std::uint64_t seed = 13000;
  for (const BwdCase& bc : {bwd_case({"", 2, 150, 3, 64, 64, E::BF16, false, Gate::Fla, true, false, {}}, true),
                            bwd_case({"", 1, 90, 2, 60, 100, E::F32, true, Gate::Strong, true, true, {0, 10, 90}}, true)}) {
    SCOPED_TRACE(bc.name);
    const dplr::DplrProblem p = make_bwd_problem(bc, ++seed);
    const dplr::TensorMap first = dplr::run_gpu_recurrent_backward(p), second = dplr::run_gpu_recurrent_backward(p);
    ASSERT_EQ(first.size(), second.size());
    for (const auto& [name, t] : first)
      EXPECT_EQ(t.values, second.at(name).values) << bc.name << ": " << name << " differs between two runs";
  }
}

// Every kernel once on small shapes (compute-sanitizer's racecheck / memcheck are slow): the three row counts
// (K <= 32, <= 64, <= 128), one and two V tiles (the tile-sum kernel), varlen with empty sequences, T = 1, reverse.
// Asserts that every launch is accepted and every gradient comes back written and finite.
TEST(GpuSanitizeRecurrentBwd, EveryKernelOnce) {
  REQUIRE_DEVICE();
  using E = g::ElemType;
  std::uint64_t seed = 14000;
  for (const BwdCase& bc : {bwd_case({"", 1, 19, 2, 60, 100, E::BF16, true, Gate::Strong, true, true, {}}, true),
                            bwd_case({"", 2, 1, 1, 32, 32, E::F32, false, Gate::Fla, true, false, {}}, false),
                            bwd_case({"", 1, 70, 1, 128, 128, E::F16, false, Gate::Fla, true, false, {0, 0, 5, 70}}, true)}) {
    SCOPED_TRACE(bc.name);
    const dplr::DplrProblem p = make_bwd_problem(bc, ++seed);
    dplr::TensorMap out;
    ASSERT_NO_THROW(out = dplr::run_gpu_recurrent_backward(p));
    for (const auto& [name, t] : out) EXPECT_EQ(count_bad(t.values), 0) << bc.name << ": " << name << " not fully written";
  }
}

TEST(GpuRecurrentBwdRefusal, UnsupportedRequestsThrowBeforeLaunch) {
  // No device needed: the checks run before any launch.
  int dummy = 0;
  float* f = reinterpret_cast<float*>(&dummy);
  g::ForwardInputs in;
  in.B = 1, in.T = 8, in.H = 1, in.K = 64, in.V = 64;
  in.q = in.k = in.v = in.a = in.b = in.gk = &dummy;
  in.dtype = in.gk_dtype = g::ElemType::BF16;
  g::RecurrentBackwardArgs args;
  args.grad_o = &dummy;
  args.dq = args.dk = args.dv = args.da = args.db = &dummy;
  args.dgk = f;
  args.workspace = f;
  EXPECT_NO_THROW(g::check_recurrent_backward(in, args));
  auto refused = [&](const g::ForwardInputs& x, const g::RecurrentBackwardArgs& a, const char* fragment) {
    try {
      g::check_recurrent_backward(x, a);
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const g::Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  g::RecurrentBackwardArgs a = args;
  a.grad_o = nullptr;
  refused(in, a, "do");
  a = args;
  a.db = nullptr;
  refused(in, a, "db");
  a = args;
  a.dgk = nullptr;
  refused(in, a, "dgk");
  a = args;
  a.workspace = nullptr;
  refused(in, a, "workspace");
  g::ForwardInputs x = in;
  x.K = 129;
  refused(x, args, "K and V");
  x = in;
  x.H = 70000;
  refused(x, args, "H <= 65535");
  x = in;
  x.B = 70000;
  refused(x, args, "B <= 65535");
  x = in;
  x.gk_dtype = g::ElemType::F16;
  refused(x, args, "gk");
  // The entry point itself refuses before launching (null pointers are never dereferenced on the host).
  a = args;
  a.dq = nullptr;
  EXPECT_THROW(g::fused_recurrent_backward(in, a), g::Unsupported);

  // The host runner: do is required, and do / dht must be exact in the kernel's dtypes.
  const BwdCase bc = bwd_case({"", 1, 4, 1, 8, 8, g::ElemType::BF16, false, Gate::Fla, false, false, {}}, true);
  dplr::DplrProblem p = make_bwd_problem(bc, 1);
  dplr::DplrProblem no_do = p;
  no_do.grad_o.reset();
  no_do.grad_ht.reset();
  EXPECT_THROW(dplr::run_gpu_recurrent_backward(no_do), dplr::InputError);
  dplr::DplrProblem inexact = p;
  inexact.grad_o->values[3] = 1.0 + std::ldexp(1.0, -20);  // not a bf16 value
  try {
    dplr::run_gpu_recurrent_backward(inexact);
    ADD_FAILURE() << "a do that bf16 cannot hold was accepted";
  } catch (const dplr::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'do' element 3"), std::string::npos) << e.what();
  }
}

// The workspace as dplr_gpu.hpp documents it (K = 60 pads to 64 rows, V = 100 to two tiles of 64 columns).
TEST(GpuRecurrentBwdRefusal, WorkspaceSizes) {
  int dummy = 0;
  g::ForwardInputs in;
  in.B = 2, in.T = 100, in.H = 3, in.K = 60, in.V = 100;
  in.q = in.k = in.v = in.a = in.b = in.gk = &dummy;
  in.dtype = in.gk_dtype = g::ElemType::F32;
  const std::int64_t state = 64 * 128;  // padded K x padded V of one head
  g::RecurrentBackwardWorkspaceSizes s = g::fused_recurrent_backward_workspace(in);
  EXPECT_EQ(s.checkpoints, (200 / 64 + 2) * 3 * state);
  EXPECT_EQ(s.segment_states, 2 * 64 * 3 * state);
  EXPECT_EQ(s.partials, 2 * 5 * 2 * 100 * 3 * 60);
  in.V = 64;
  in.T = 10;
  s = g::fused_recurrent_backward_workspace(in);
  EXPECT_EQ(s.segment_states, 2 * 10 * 3 * 64 * 64) << "segments no longer than T";
  EXPECT_EQ(s.partials, 0) << "one V tile: the block stores the gradients itself";
  // cu_seqlens: scratch by token where that is fewer slots (T = 100 < N min(64, T) = 4 x 64).
  in.B = 1, in.T = 100;
  in.cu_seqlens = reinterpret_cast<const std::int64_t*>(&dummy);
  in.num_sequences = 4;
  s = g::fused_recurrent_backward_workspace(in);
  EXPECT_EQ(s.segment_states, 100 * 3 * 64 * 64);
  EXPECT_EQ(s.checkpoints, (100 / 64 + 4) * 3 * 64 * 64);
}

}  // namespace
#endif
