// The staged chunk backward on the GPU (gpu/dplr_gpu.hpp, "chunk form, backward") against the exact answers:
//   - every backward stage run alone (o_bwd, h_bwd, WY_bwd, A_bwd, cumsum_bwd, each on the GPU's previous stages)
//     against the exact stage oracles (reference/chunk_stages.hpp, double, rounded once to fp32): relative RMSE
//     <= 1e-5 for every stage tensor, so that a wrong stage is named;
//   - the driver (chunk_backward through run_gpu_chunk_backward) against the exact reference (reference.hpp,
//     double): fp32 inputs <= 1e-6 relative RMSE for every gradient; 16-bit inputs <= 1.3x the correctly-rounded
//     floor (the exact gradient rounded once to the dtype) for dq, dk, dv, da, db, and <= 1e-5 for the fp32 dgk
//     and dh0; the driver's stage tensors bitwise equal to the stages run alone, its 16-bit dv the stages' fp32 dv
//     rounded once (bitwise);
//   - two runs bitwise equal; every kernel once on small cases (for compute-sanitizer); refusals before launch.
// Cases: H > 1 with differing heads, K, V in {60, 64, 100, 128} and 37, 45, 70, 99, T not a multiple of C, varlen with empty and
// short sequences, h0 and dht, C 16 / 32 / 64, gk ~ fla's logsigmoid, U[-30, 0] and pinned -30, fp32 / fp16 /
// bf16 (gk fp32 with 16-bit inputs). Outputs are poisoned (NaN) before every run; every element must come back
// finite. Skips without a CUDA device; built without CUDA it holds one skipping test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"

#ifdef DPLR_NO_CUDA
TEST(GpuBackward, Skipped) { GTEST_SKIP() << "built without CUDA (DPLR_ENABLE_CUDA=OFF): no GPU kernels to test"; }
#else
#include "gpu/dplr_gpu.hpp"
#include "tests/gpu/gpu_test_cases.hpp"
#include "verify/gpu_harness.hpp"
#include "verify/gpu_runner.hpp"

namespace {
using namespace dplr_gpu_test;
using dplr::rel_rmse;
using DevBuf = dplr::DeviceBuffer;
using E = g::ElemType;

struct BackwardCase {
  Case c;
  bool dht;
};

std::vector<BackwardCase> backward_cases() {
  std::vector<BackwardCase> cs = {
      {{"", 1, 77, 2, 60, 100, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 2, 100, 3, 64, 64, E::F32, false, Gate::Fla, true, false, {}}, false},
      {{"", 1, 130, 2, 128, 128, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 70, 2, 100, 60, E::F32, false, Gate::Pinned30, false, false, {}}, true},
      {{"", 2, 1, 2, 64, 64, E::F32, false, Gate::Fla, true, false, {}}, true},
      {{"", 1, 70, 2, 100, 60, E::BF16, true, Gate::Fla, true, false, {}}, true},
      {{"", 2, 90, 2, 64, 64, E::F16, false, Gate::Strong, false, false, {}}, false},
      {{"", 1, 50, 2, 128, 100, E::BF16, false, Gate::Strong, true, false, {}}, true},
      // cu_seqlens: empty sequences (first, inside, last), sequences shorter than a chunk, lengths not multiples of C
      {{"", 1, 120, 2, 64, 64, E::F32, false, Gate::Fla, true, false, {0, 0, 5, 60, 60, 120}}, true},
      {{"", 1, 90, 2, 60, 100, E::BF16, true, Gate::Strong, true, false, {0, 3, 50, 90, 90}}, true},
      {{"", 1, 100, 2, 128, 128, E::F32, false, Gate::Strong, false, false, {0, 1, 65, 100}}, false},
      // K, V not multiples of 4: the 4-wide loops of h_bwd end in a scalar remainder
      {{"", 1, 90, 2, 37, 45, E::BF16, true, Gate::Strong, true, false, {}}, true},
      {{"", 1, 80, 2, 70, 99, E::F32, false, Gate::Fla, true, false, {}}, true},
      // 16-bit, K and V multiples of 8: the tensor-core o_bwd and WY_bwd at C = 16 (K = V = 128 with T not a
      // multiple of 16, gk pinned at -30, varlen with empty and short sequences, K != V)
      {{"", 1, 130, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      {{"", 2, 100, 3, 64, 64, E::BF16, true, Gate::Pinned30, false, false, {}}, false},
      {{"", 1, 120, 2, 64, 64, E::BF16, false, Gate::Fla, true, false, {0, 0, 5, 60, 60, 120}}, true},
      {{"", 1, 90, 2, 64, 128, E::F16, true, Gate::Strong, true, false, {}}, true},
      // 16-bit at C = 16 (h_bwd's tensor-core kernels): K = V = 128 under gk = -30, varlen with empty sequences
      {{"", 1, 70, 2, 128, 128, E::BF16, false, Gate::Pinned30, true, false, {}}, true},
      {{"", 1, 100, 2, 64, 64, E::BF16, true, Gate::Strong, true, false, {0, 0, 37, 37, 100}}, true},
      // the tensor-core A_bwd's range (16-bit inputs at C = 16): every gate pinned at -30; K = V = 128
      {{"", 1, 70, 2, 64, 64, E::BF16, false, Gate::Pinned30, true, false, {}}, true},
      {{"", 1, 60, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      // 16-bit cases the tensor-core recompute takes at C = 16 (K % 4 == 0, V % 8 == 0): K = V = 128 (chunk_A_WY's two
      // warps a chunk, h's KM = 128), varlen with empty and short sequences, gk pinned at -30
      {{"", 1, 70, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 100, 2, 64, 64, E::BF16, true, Gate::Fla, true, false, {0, 0, 7, 40, 40, 100}}, true},
      {{"", 1, 60, 2, 64, 64, E::F16, false, Gate::Pinned30, false, false, {}}, true},
      // K = V = 128 16-bit varlen with empty and short sequences (the tensor-core kernels' K = 128 layouts)
      {{"", 1, 100, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {0, 0, 9, 9, 100}}, true},
  };
  for (auto& b : cs) b.c.name = describe(b.c) + (b.dht ? " dht" : "");
  return cs;
}

const char* const kGradients[] = {"dq", "dk", "dv", "da", "db", "dgk", "dh0"};

// A stage tensor (fp32) against the fp64 oracle rounded once to fp32.
void expect_stage(const char* stage, const char* name, const std::vector<double>& x, std::vector<double> oracle,
                  double tol) {
  for (auto& v : oracle) v = dplr::round_to_dtype(v, DType::F32);
  ASSERT_EQ(x.size(), oracle.size()) << "stage " << stage << ": " << name << " size";
  const std::int64_t bad = count_bad(x);
  EXPECT_EQ(bad, 0) << "stage " << stage << ": " << name << " has " << bad << " unwritten or non-finite elements";
  const double e = rel_rmse(x, oracle);
  EXPECT_LE(e, tol) << "stage " << stage << ": " << name << " rel RMSE " << e << " against the fp64 chunk form";
  std::printf("    stage %-10s %-7s rel RMSE %.3e\n", stage, name, e);
}

// Every forward and backward stage alone, in pipeline order, each on the GPU's own previous stages; returns the
// backward stage tensors (fp32, oracle names; dq, dk, dv, da, db are the stages' fp32 totals).
std::map<std::string, std::vector<double>> run_stages_alone(const dplr::DplrProblem& p, int C,
                                                            const g::BackwardVariant& variant) {
  dplr::DeviceProblem d(p);
  g::BackwardInputs in = d.backward_inputs();
  in.variant = variant;
  const auto& s = p.shape;
  const std::int64_t N = p.num_sequences();
  const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(in, C);
  DevBuf buffer(sz.total() * 4), dh0(N * s.H * s.K * s.V * 4), dgk(s.B * s.T * s.H * s.K * 4);
  for (DevBuf* b : {&buffer, &dh0, &dgk}) b->poison();
  const g::BackwardWorkspace ws = g::carve_backward_workspace(in, C, buffer.f());
  if (in.fwd.cu_seqlens) {
    g::prepare_chunk_offsets(in.fwd, C, ws.forward.chunk_offsets);
    in.fwd.chunk_offsets = ws.forward.chunk_offsets;
    in.fwd.chunk_offsets_C = C;
  }
  const g::ChunkWorkspace& fw = ws.forward;
  const g::GatedOperands& gt = fw.gated;
  g::chunk_A(in.fwd, C, fw.A_qk, fw.A_qb, fw.A_ak, fw.A_ab, gt);
  g::chunk_WY(in.fwd, C, fw.A_ab, fw.A_ak, gt.ag, fw.A_ab_inv, fw.w, fw.u);
  g::chunk_h(in.fwd, C, gt.kg, gt.bg, gt.eg_last, fw.w, fw.u, fw.h, fw.v_new, nullptr);
  const g::GradientShares& sh = ws.shares;
  g::chunk_o_bwd(in, C, fw.A_qk, fw.A_qb, gt.qg, fw.v_new, fw.h, ws.dA_qk, ws.dA_qb, ws.dv, sh);
  g::chunk_h_bwd(in, C, gt.kg, gt.bg, gt.eg_last, fw.w, fw.h, fw.v_new, ws.dh, ws.dv_new, ws.dw, ws.dv, dh0.f(), sh);
  g::chunk_WY_bwd(in, C, fw.A_ab_inv, fw.A_ak, fw.w, fw.u, ws.dw, ws.dv_new, ws.dA_ab, ws.dA_ak, ws.dv, sh);
  g::chunk_A_bwd(in, C, ws.dA_qk, ws.dA_qb, ws.dA_ak, ws.dA_ab, ws.dq, ws.dk, ws.da, ws.db, sh);
  g::chunk_cumsum_bwd(in, C, dgk.f(), sh);
  dplr::check_cuda(cudaDeviceSynchronize(), "backward stages");
  const dplr::ChunkGrid grid = dplr::ChunkGrid::of(p, C);
  const std::size_t nk = s.B * s.T * s.H * s.K, nv = s.B * s.T * s.H * s.V, na = s.B * s.T * s.H * C,
                    nh = grid.rows * grid.NT * s.H * s.K * s.V;
  auto get = [](const float* ptr, std::size_t n) { return dplr::download_values(ptr, n, E::F32); };
  return {{"dA_qk", get(ws.dA_qk, na)}, {"dA_qb", get(ws.dA_qb, na)}, {"dA_ak", get(ws.dA_ak, na)},
          {"dA_ab", get(ws.dA_ab, na)}, {"dh", get(ws.dh, nh)},         {"dv_new", get(ws.dv_new, nv)},
          {"dw", get(ws.dw, nk)},       {"dv", get(ws.dv, nv)},         {"dq", get(ws.dq, nk)},
          {"dk", get(ws.dk, nk)},       {"da", get(ws.da, nk)},         {"db", get(ws.db, nk)},
          {"dgk", get(dgk.f(), nk)},    {"dh0", get(dh0.f(), N * s.H * s.K * s.V)}};
}

// The stage each backward tensor is checked under (the oracles' table: the stage that completes it).
struct StageTensor {
  const char* stage;
  const char* name;
};
const StageTensor kStageTensors[] = {{"o_bwd", "dA_qk"},  {"o_bwd", "dA_qb"},  {"h_bwd", "dh"},     {"h_bwd", "dv_new"},
                                     {"h_bwd", "dw"},     {"h_bwd", "dh0"},    {"WY_bwd", "dA_ab"},  {"WY_bwd", "dA_ak"},
                                     {"WY_bwd", "dv"},    {"A_bwd", "dq"},     {"A_bwd", "dk"},      {"A_bwd", "da"},
                                     {"A_bwd", "db"},     {"cumsum_bwd", "dgk"}};

// The kernel sets each case runs: every stage's FMA kernel; each stage's default (its tensor-core kernel where it
// takes the request) on the staged recomputed forward, so that the driver's tensors are bitwise the stages' alone;
// and the default everywhere (the fast path: recomputed on the fused forward's kernels), whose stage tensors are
// checked against the oracles instead.
struct KernelSet {
  const char* name;
  dplr::GpuBackwardKernels kernels;
  bool driver_is_stages;  // the driver recomputes the forward as run_stages_alone does
};
const KernelSet kKernelSets[] = {
    {"fma", dplr::GpuBackwardKernels::all(dplr::GpuKernelChoice::Fma), true},
    {"default-stages", {dplr::GpuKernelChoice::Fma}, true},
    {"default", {}, false},
};
g::BackwardVariant to_variant(const dplr::GpuBackwardKernels& k) {
  auto one = [](dplr::GpuKernelChoice c) {
    return c == dplr::GpuKernelChoice::Fma ? g::BwdKernel::Fma
           : c == dplr::GpuKernelChoice::TensorCores ? g::BwdKernel::TensorCores : g::BwdKernel::Default;
  };
  return {one(k.recompute), one(k.o), one(k.h), one(k.wy), one(k.a)};
}

TEST(GpuChunkBackward, StagesAndGradientsMatchExact) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 7000;
  for (int C : {16, 32, 64})
    for (const BackwardCase& bc : backward_cases())
      for (const KernelSet& ks : kKernelSets) {
      const Case& c = bc.c;
      SCOPED_TRACE(c.name + " C" + std::to_string(C) + " kernels " + ks.name);
      const dplr::DplrProblem p = make_backward_problem(c, bc.dht, ++seed);
      std::printf("  %s C%d kernels %s\n", c.name.c_str(), C, ks.name);
      // Stages alone against the exact stage oracles.
      const dplr::ChunkStages oracle = dplr::run_chunk_stages(p, C, dplr::Precision{dplr::Arithmetic::Double, 0});
      const auto stages = run_stages_alone(p, C, to_variant(ks.kernels));
      for (const auto& st : kStageTensors) {
        ASSERT_EQ(dplr::chunk_stage_of(st.name), st.stage) << st.name;
        expect_stage(st.stage, st.name, stages.at(st.name), oracle.tensors.at(st.name).rounded(), 1e-5);
      }
      // The driver against the exact reference.
      const dplr::ReferenceResult exact = dplr::run_reference(p, dplr::ReferenceOptions{dplr::Precision{dplr::Arithmetic::Double, 0}});
      dplr::GpuRunOptions run;
      run.backward = ks.kernels;
      const dplr::TensorMap got = dplr::run_gpu_chunk_backward(p, C, run);
      for (const char* name : kGradients) {
        const std::vector<double>& x = got.at(name).values;
        const std::vector<double> ref = exact.tensors.at(name).rounded();
        ASSERT_EQ(x.size(), ref.size()) << name;
        EXPECT_EQ(count_bad(x), 0) << name << " has unwritten or non-finite elements";
        const bool rounded = got.at(name).dtype != DType::F32;  // dq, dk, dv, da, db of 16-bit inputs
        std::vector<double> floor_x = ref;
        for (auto& v : floor_x) v = dplr::round_to_dtype(v, got.at(name).dtype);
        const double e = rel_rmse(x, ref), floor = rel_rmse(floor_x, ref);
        const double bar = rounded ? 1.3 * floor : c.dt == E::F32 ? 1e-6 : 1e-5;
        std::printf("    grad %-4s rel RMSE %.3e (floor %.3e, %.2fx; bar %.3e)\n", name, e, floor, floor > 0 ? e / floor : 0.0,
                    bar);
        EXPECT_LE(e, bar) << name << ": rel RMSE " << e << " against the exact reference, over the bar " << bar
                          << (rounded ? " (1.3x the correctly-rounded floor " + std::to_string(floor) + ")" : "");
      }
      if (!ks.driver_is_stages) {
        // Another recomputed forward (same values to fp32 rounding, not bitwise): the driver's own stage tensors
        // against the oracles.
        for (const char* name : {"dA_qk", "dA_qb", "dA_ak", "dA_ab", "dh", "dv_new", "dw"})
          expect_stage(dplr::chunk_stage_of(name).c_str(), name, got.at(name).values, oracle.tensors.at(name).rounded(),
                       1e-5);
        continue;
      }
      // The driver's stage tensors are the stages' own (same kernels, same inputs): bitwise.
      for (const char* name : {"dA_qk", "dA_qb", "dA_ak", "dA_ab", "dh", "dv_new", "dw", "dgk", "dh0"})
        EXPECT_EQ(got.at(name).values, stages.at(name)) << "chunk_backward's " << name << " differs from the stages run alone";
      if (c.dt == E::F32) {
        for (const char* name : {"dq", "dk", "dv", "da", "db"})
          EXPECT_EQ(got.at(name).values, stages.at(name)) << "chunk_backward's " << name << " differs from the stages run alone";
      } else {
        // 16-bit: each gradient's last writer rounds its fp32 total once into the output (dv: WY_bwd,
        // chunk_WY_bwd_rounding_dv; dq, dk, da, db: the fused A_bwd + cumsum_bwd where A_bwd runs on tensor cores,
        // else a rounding pass from the totals): the stages' fp32 totals rounded once, bitwise.
        for (const char* name : {"dq", "dk", "dv", "da", "db"}) {
          std::vector<double> rounded = stages.at(name);
          for (auto& v : rounded) v = dplr::round_to_dtype(v, got.at(name).dtype);
          EXPECT_EQ(got.at(name).values, rounded)
              << "chunk_backward's " << name << " is not the stages' fp32 total rounded once to " << dplr::dtype_name(got.at(name).dtype);
        }
      }
    }
}

// The driver's WY_bwd rounds dv into out.dv; its tensor-core kernel stores pairs of 16-bit values (4 bytes). An out.dv
// that is not 4-byte aligned: Default takes the FMA kernel (bitwise variant.wy = Fma's dv), an explicit TensorCores
// is refused (after the stages before WY_bwd ran).
TEST(GpuChunkBackward, RoundedDvNotFourByteAligned) {
  REQUIRE_DEVICE();
  Case c{"", 1, 50, 2, 64, 64, E::BF16, false, Gate::Strong, true, false, {}};
  const dplr::DplrProblem p = make_backward_problem(c, true, 7950);
  dplr::DeviceProblem d(p);
  const auto& s = p.shape;
  const std::size_t nk = s.B * s.T * s.H * s.K, nv = s.B * s.T * s.H * s.V, nh = p.num_sequences() * s.H * s.K * s.V;
  auto run = [&](g::BwdKernel wy, std::size_t dv_offset_bytes) {
    g::BackwardInputs in = d.backward_inputs();
    in.variant.wy = wy;
    DevBuf buffer(g::chunk_backward_workspace_floats(in, 16).total() * 4), dq(nk * 2), dk(nk * 2), da(nk * 2),
        db(nk * 2), dv(nv * 2 + 16), dgk(nk * 4), dh0(nh * 4);
    for (DevBuf* b : {&buffer, &dv}) b->poison();
    const g::BackwardWorkspace ws = g::carve_backward_workspace(in, 16, buffer.f());
    g::BackwardOutputs out;
    out.dq = dq.get(), out.dk = dk.get(), out.da = da.get(), out.db = db.get(), out.dgk = dgk.f(), out.dh0 = dh0.f();
    out.dv = static_cast<char*>(dv.get()) + dv_offset_bytes;
    g::chunk_backward(in, 16, ws, out);
    dplr::check_cuda(cudaDeviceSynchronize(), "chunk_backward");
    return dplr::download_values(out.dv, nv, E::BF16);
  };
  const std::vector<double> fma = run(g::BwdKernel::Fma, 0), shifted = run(g::BwdKernel::Default, 2);
  EXPECT_EQ(count_bad(fma), 0);
  EXPECT_EQ(shifted, fma) << "out.dv 2 bytes off: Default should take the FMA WY_bwd";
  try {
    run(g::BwdKernel::TensorCores, 2);
    ADD_FAILURE() << "an explicit TensorCores WY_bwd with out.dv 2 bytes off was not refused";
  } catch (const g::Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("4-byte aligned rounded dv"), std::string::npos) << e.what();
  }
}

// The recomputed forward alone (chunk_backward_recompute) on its tensor-core path (chunk_A_WY with
// AWYBackwardTensors, chunk_h_o with HOStates), every tensor the backward stages read against the exact stage
// oracles (1e-5; the staged recompute's are checked by the stages-alone runs above), on a poisoned workspace.
TEST(GpuChunkBackward, TensorCoreRecomputeMatchesOracles) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 7700;
  for (const Case& c0 : {Case{"", 2, 90, 2, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},
                         Case{"", 1, 70, 2, 128, 128, E::F16, true, Gate::Strong, false, false, {}},
                         Case{"", 1, 50, 1, 128, 64, E::BF16, false, Gate::Pinned30, true, false, {}},
                         Case{"", 1, 45, 2, 32, 96, E::BF16, false, Gate::Strong, true, false, {}},
                         Case{"", 1, 100, 2, 64, 64, E::BF16, false, Gate::Strong, true, false, {0, 0, 7, 40, 40, 100}}}) {
    Case c = c0;
    c.name = describe(c);
    SCOPED_TRACE(c.name);
    std::printf("  %s C16 recompute tensor-cores\n", c.name.c_str());
    const dplr::DplrProblem p = make_backward_problem(c, true, ++seed);
    dplr::DeviceProblem d(p);
    g::BackwardInputs in = d.backward_inputs();
    in.variant.recompute = g::BwdKernel::TensorCores;
    ASSERT_TRUE(g::chunk_recompute_tensor_cores_supported(in, 16));
    const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(in, 16);
    DevBuf buffer(sz.total() * 4);
    buffer.poison();
    const g::BackwardWorkspace ws = g::carve_backward_workspace(in, 16, buffer.f());
    if (in.fwd.cu_seqlens) {
      g::prepare_chunk_offsets(in.fwd, 16, ws.forward.chunk_offsets);
      in.fwd.chunk_offsets = ws.forward.chunk_offsets;
      in.fwd.chunk_offsets_C = 16;
    }
    const g::ChunkWorkspace& fw = ws.forward;
    g::chunk_backward_recompute(in, 16, fw);
    dplr::check_cuda(cudaDeviceSynchronize(), "chunk_backward_recompute");
    const dplr::ChunkStages oracle = dplr::run_chunk_stages(p, 16, dplr::Precision{dplr::Arithmetic::Double, 0});
    const dplr::ChunkGrid grid = dplr::ChunkGrid::of(p, 16);
    const auto& s = p.shape;
    const std::size_t nk = s.B * s.T * s.H * s.K, nv = s.B * s.T * s.H * s.V, na = s.B * s.T * s.H * 16,
                      nh = grid.rows * grid.NT * s.H * s.K * s.V, ne = grid.rows * grid.NT * s.H * s.K;
    const std::pair<const char*, std::pair<const float*, std::size_t>> tensors[] = {
        {"A_qk", {fw.A_qk, na}}, {"A_qb", {fw.A_qb, na}},        {"A_ak", {fw.A_ak, na}}, {"A_ab_inv", {fw.A_ab_inv, na}},
        {"qg", {fw.gated.qg, nk}}, {"kg", {fw.gated.kg, nk}},    {"bg", {fw.gated.bg, nk}},
        {"eg_last", {fw.gated.eg_last, ne}}, {"w", {fw.w, nk}},  {"u", {fw.u, nv}},
        {"h", {fw.h, nh}},       {"v_new", {fw.v_new, nv}}};
    for (const auto& [name, pn] : tensors)
      expect_stage(dplr::chunk_stage_of(name).c_str(), name, dplr::download_values(pn.first, pn.second, E::F32),
                   oracle.tensors.at(name).rounded(), 1e-5);
  }
}

// h_bwd forming o_bwd's shares dh_o, dv_new_o itself (both nullptr: the driver's path where both stages run on tensor
// cores) against the same stages with the shares formed by o_bwd and read: o_bwd with them nullptr writes its other
// tensors bitwise as before; the formed h_bwd's tensors are bitwise the read ones where o_bwd runs on tensor cores
// (K, V multiples of 8: the same MMAs in the same order), else (o_bwd's FMA kernel) within 1e-5 of the oracles.
TEST(GpuChunkBackward, HBwdFormsOSharesAsOBwd) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 7900;
  for (const BackwardCase& bc : {BackwardCase{{"", 2, 100, 3, 64, 64, E::BF16, true, Gate::Fla, true, false, {}}, true},
                                 BackwardCase{{"", 1, 70, 2, 128, 128, E::F16, false, Gate::Pinned30, true, false, {}}, true},
                                 BackwardCase{{"", 1, 100, 2, 64, 128, E::BF16, false, Gate::Strong, false, false,
                                               {0, 0, 37, 37, 100}}, true},
                                 BackwardCase{{"", 1, 90, 2, 60, 100, E::BF16, true, Gate::Strong, true, false, {}}, false}}) {
    Case c = bc.c;
    c.name = describe(c);
    SCOPED_TRACE(c.name);
    std::printf("  %s C16 h_bwd forms dh_o, dv_new_o\n", c.name.c_str());
    const dplr::DplrProblem p = make_backward_problem(c, bc.dht, ++seed);
    dplr::DeviceProblem d(p);
    g::BackwardInputs in = d.backward_inputs();
    const auto& s = p.shape;
    const std::int64_t N = p.num_sequences();
    const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(in, 16);
    const std::size_t nk = s.B * s.T * s.H * s.K, nv = s.B * s.T * s.H * s.V, na = s.B * s.T * s.H * 16, n0 = N * s.H * s.K * s.V;
    DevBuf buffer(sz.total() * 4), dh0(n0 * 4);
    // The second run's outputs: o_bwd's (dA_qk, dA_qb, dv, dq_o), h_bwd's (dh, dv_new, dw, dk_h, db_h, d_chunk_decay, dh0)
    DevBuf qk(na * 4), qb(na * 4), dv(nv * 4), dqo(nk * 4), dh(sz.state * 4), dvn(nv * 4), dw(nk * 4), dkh(nk * 4),
        dbh(nk * 4), dcd(sz.chunk_kdim * 4), dh0f(n0 * 4);
    for (DevBuf* b : {&buffer, &dh0, &qk, &qb, &dv, &dqo, &dh, &dvn, &dw, &dkh, &dbh, &dcd, &dh0f}) b->poison();
    const g::BackwardWorkspace ws = g::carve_backward_workspace(in, 16, buffer.f());
    if (in.fwd.cu_seqlens) {
      g::prepare_chunk_offsets(in.fwd, 16, ws.forward.chunk_offsets);
      in.fwd.chunk_offsets = ws.forward.chunk_offsets;
      in.fwd.chunk_offsets_C = 16;
    }
    const g::ChunkWorkspace& fw = ws.forward;
    const g::GatedOperands& gt = fw.gated;
    ASSERT_TRUE(g::chunk_h_bwd_tensor_cores_supported(in, 16));
    const bool o_mma = g::chunk_o_bwd_tensor_cores_supported(in, 16);
    EXPECT_EQ(o_mma, c.K % 8 == 0 && c.V % 8 == 0);
    g::chunk_backward_recompute(in, 16, fw);
    const g::GradientShares& sh = ws.shares;
    g::chunk_o_bwd(in, 16, fw.A_qk, fw.A_qb, gt.qg, fw.v_new, fw.h, ws.dA_qk, ws.dA_qb, ws.dv, sh);
    g::chunk_h_bwd(in, 16, gt.kg, gt.bg, gt.eg_last, fw.w, fw.h, fw.v_new, ws.dh, ws.dv_new, ws.dw, ws.dv, dh0.f(), sh);
    g::GradientShares formed = sh;
    formed.dq_o = dqo.f(), formed.dk_h = dkh.f(), formed.db_h = dbh.f(), formed.d_chunk_decay = dcd.f();
    formed.dh_o = formed.dv_new_o = nullptr;
    g::chunk_o_bwd(in, 16, fw.A_qk, fw.A_qb, gt.qg, fw.v_new, fw.h, qk.f(), qb.f(), dv.f(), formed);
    g::chunk_h_bwd(in, 16, gt.kg, gt.bg, gt.eg_last, fw.w, fw.h, fw.v_new, dh.f(), dvn.f(), dw.f(), dv.f(), dh0f.f(),
                   formed, 0, g::OShareOperands{gt.qg, fw.A_qb});
    dplr::check_cuda(cudaDeviceSynchronize(), "o_bwd, h_bwd with the shares formed by h_bwd");
    auto get = [](const float* ptr, std::size_t n) { return dplr::download_values(ptr, n, E::F32); };
    const dplr::ChunkGrid grid = dplr::ChunkGrid::of(p, 16);
    const std::size_t nh = grid.rows * grid.NT * s.H * s.K * s.V, nc = grid.rows * grid.NT * s.H * s.K;
    for (const auto& [name, x, y, n] :
         {std::tuple<const char*, const float*, const float*, std::size_t>{"dA_qk", qk.f(), ws.dA_qk, na},
          {"dA_qb", qb.f(), ws.dA_qb, na}, {"dq_o", dqo.f(), sh.dq_o, nk}})
      EXPECT_EQ(get(x, n), get(y, n)) << "o_bwd without dh_o, dv_new_o: " << name << " differs";
    const dplr::ChunkStages oracle = dplr::run_chunk_stages(p, 16, dplr::Precision{dplr::Arithmetic::Double, 0});
    const std::tuple<const char*, const float*, const float*, std::size_t> h_out[] = {
        {"dh", dh.f(), ws.dh, nh},       {"dv_new", dvn.f(), ws.dv_new, nv}, {"dw", dw.f(), ws.dw, nk},
        {"dh0", dh0f.f(), dh0.f(), n0},  {"dv", dv.f(), ws.dv, nv},          {"dk_h", dkh.f(), sh.dk_h, nk},
        {"db_h", dbh.f(), sh.db_h, nk},  {"d_chunk_decay", dcd.f(), sh.d_chunk_decay, nc}};
    for (const auto& [name, x, y, n] : h_out) {
      const std::vector<double> got = get(x, n);
      EXPECT_EQ(count_bad(got), 0) << name << " has unwritten or non-finite elements";
      if (o_mma) EXPECT_EQ(got, get(y, n)) << "h_bwd forming o_bwd's shares: " << name << " differs from reading them";
      else if (oracle.tensors.count(name) && std::string(name) != "dv")  // dh, dv_new, dw, dh0 (dv: after WY_bwd)
        expect_stage("h_bwd", name, got, oracle.tensors.at(name).rounded(), 1e-5);
    }
  }
}

// No atomics, fixed summation orders: two runs give the same bits.
TEST(GpuChunkBackward, BitwiseRepeatable) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 8000;
  for (const BackwardCase& bc : {BackwardCase{{"", 2, 150, 3, 64, 64, E::BF16, true, Gate::Fla, true, false, {}}, true},
                                 BackwardCase{{"", 1, 200, 2, 100, 128, E::F32, false, Gate::Strong, true, false,
                                               {0, 7, 7, 120, 200}}, true}})
    for (int C : {16, 64}) {
      Case c = bc.c;
      c.name = describe(c);
      SCOPED_TRACE(c.name + " C" + std::to_string(C));
      const dplr::DplrProblem p = make_backward_problem(c, bc.dht, ++seed);
      const dplr::TensorMap first = dplr::run_gpu_chunk_backward(p, C), second = dplr::run_gpu_chunk_backward(p, C);
      for (const auto& [name, t] : first) EXPECT_EQ(t.values, second.at(name).values) << name << " differs between two runs";
    }
}

// Every backward kernel (and the forward ones the driver recomputes) once on small shapes, for compute-sanitizer's
// memcheck and racecheck; asserts only that every tensor comes back written and finite.
TEST(GpuSanitizeBackward, EveryKernelOnce) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 9500;
  for (const BackwardCase& bc : {BackwardCase{{"", 1, 19, 2, 60, 100, E::BF16, true, Gate::Strong, true, false, {}}, true},
                                 BackwardCase{{"", 1, 40, 1, 128, 128, E::F32, false, Gate::Fla, false, false, {}}, false},
                                 BackwardCase{{"", 1, 45, 2, 64, 64, E::F16, false, Gate::Fla, true, false,
                                               {0, 0, 5, 5, 45}}, true},
                                 // 7 chunks (WYPipe's multi-chunk walk, where chosen: blocks of 4 and 3 chunks on its cp.async ring)
                                 BackwardCase{{"", 1, 100, 1, 64, 64, E::BF16, false, Gate::Strong, true, false, {}}, true}}) {
    Case c = bc.c;
    c.name = describe(c);
    const dplr::DplrProblem p = make_backward_problem(c, bc.dht, ++seed);
    for (int C : {16, 32, 64})
      for (const KernelSet& ks : kKernelSets) {
        SCOPED_TRACE(c.name + " C" + std::to_string(C) + " kernels " + ks.name);
        dplr::GpuRunOptions run;
        run.backward = ks.kernels;
        dplr::TensorMap got;
        ASSERT_NO_THROW(got = dplr::run_gpu_chunk_backward(p, C, run));
        for (const auto& [name, t] : got) EXPECT_EQ(count_bad(t.values), 0) << name << " has unwritten or non-finite elements";
      }
  }
}

// The workspace carve (no device needed): every backward piece 256-byte aligned inside sizes.total() floats, also with
// cu_seqlens, where the forward part counts chunk_offsets' N + 1 entries (N + 1 = 5, 6: before the fix every backward
// piece was 4 or 8 bytes off a 16-byte boundary, so the tensor-core stages' alignment checks failed and Default ran
// the FMA kernels).
TEST(GpuBackwardWorkspace, PiecesAlignedWithinTotal) {
  int dummy = 0;
  for (std::int64_t n : {0, 3, 4, 5}) {
    g::BackwardInputs in;
    g::ForwardInputs& x = in.fwd;
    x.B = 1, x.T = 40, x.H = 2, x.K = 64, x.V = 64;
    x.q = x.k = x.v = x.a = x.b = x.gk = &dummy;
    x.dtype = x.gk_dtype = E::BF16;
    in.d_o = &dummy;
    const std::int64_t cu[] = {0, 3, 3, 20, 33, 40};
    if (n) x.cu_seqlens = cu, x.num_sequences = n, x.T = cu[n];
    const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(in, 16);
    std::vector<float> host(sz.total() + 64);
    float* buffer = host.data() + (64 - reinterpret_cast<std::uintptr_t>(host.data()) / 4 % 64) % 64;
    const g::BackwardWorkspace ws = g::carve_backward_workspace(in, 16, buffer);
    const g::GradientShares& sh = ws.shares;
    const std::pair<const float*, std::int64_t> pieces[] = {
        {ws.dA_qk, sz.A}, {ws.dA_qb, sz.A}, {ws.dA_ak, sz.A}, {ws.dA_ab, sz.A}, {ws.dh, sz.state},
        {ws.dv_new, sz.vdim}, {ws.dw, sz.kdim}, {ws.dv, sz.vdim}, {ws.dq, sz.kdim}, {ws.dk, sz.kdim}, {ws.da, sz.kdim},
        {ws.db, sz.kdim}, {sh.dq_o, sz.kdim}, {sh.dv_new_o, sz.vdim}, {sh.dh_o, sz.state}, {sh.dk_h, sz.kdim},
        {sh.db_h, sz.kdim}, {sh.d_chunk_decay, sz.chunk_kdim}, {sh.da_wy, sz.kdim}, {sh.dgk_A, sz.kdim}};
    for (const auto& [ptr, floats] : pieces) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(ptr) % 256, 0u) << "N " << n << ": piece at float " << ptr - buffer;
      EXPECT_LE(ptr + floats, buffer + sz.total()) << "N " << n << ": piece past sizes.total()";
    }
    if (n) {
      EXPECT_GE(ws.dA_qk, reinterpret_cast<const float*>(ws.forward.chunk_offsets) + n + 1) << "N " << n;
    }
  }
}

// `call` throws g::Unsupported whose message contains `says`.
template <typename Call>
void refused(Call&& call, const char* why, const char* says) {
  try {
    call();
    ADD_FAILURE() << "not refused: " << why;
  } catch (const g::Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << why << ": " << e.what();
  }
}

// The Driver scope holds the pieces the driver reads or writes for the request and no others (nullptr), each 256-byte
// aligned within its total; Stages holds every piece. No device needed: sizes and carving are host code.
TEST(GpuBackwardWorkspace, DriverScopeHoldsOnlyTheDriversPieces) {
  alignas(16) float dummy[4] = {};
  g::BackwardInputs base;
  g::ForwardInputs& x = base.fwd;
  x.B = 2, x.T = 100, x.H = 3, x.K = 64, x.V = 64;
  x.q = x.k = x.v = x.a = x.b = x.gk = dummy;
  x.dtype = x.gk_dtype = E::BF16;
  base.d_o = dummy;
  constexpr auto driver = g::BackwardWorkspaceScope::Driver;
  struct Expect {
    const char* what;
    g::BackwardInputs in;
    bool fma_recompute, o_shares, totals, dgk_A;  // the pieces held beyond every path's
  };
  std::vector<Expect> cases;
  cases.push_back({"bf16 C16, every stage on tensor cores", base, false, false, false, false});
  g::BackwardInputs y = base;
  y.variant.recompute = g::BwdKernel::Fma;
  cases.push_back({"FMA recompute", y, true, false, false, false});
  y = base;
  y.variant.o = g::BwdKernel::Fma;
  cases.push_back({"FMA o_bwd: h_bwd reads the shares", y, false, true, false, false});
  y = base;
  y.variant.a = g::BwdKernel::Fma;
  cases.push_back({"FMA A_bwd on 16-bit inputs: fp32 totals, unfused cumsum_bwd", y, false, false, true, true});
  y = base;
  y.fwd.dtype = y.fwd.gk_dtype = E::F32;
  cases.push_back({"fp32 inputs: every FMA kernel, outputs written directly", y, true, true, false, true});
  for (const Expect& e : cases) {
    SCOPED_TRACE(e.what);
    const g::BackwardWorkspaceSizes all = g::chunk_backward_workspace_floats(e.in, 16);
    const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(e.in, 16, driver);
    EXPECT_LT(sz.total(), all.total());
    std::vector<float> host(sz.total() + 64);
    float* buffer = host.data() + (64 - reinterpret_cast<std::uintptr_t>(host.data()) / 4 % 64) % 64;
    const g::BackwardWorkspace ws = g::carve_backward_workspace(e.in, 16, buffer, driver);
    const g::ChunkWorkspace& fw = ws.forward;
    const g::GradientShares& sh = ws.shares;
    const g::ChunkWorkspaceSizes& f = sz.forward;
    struct Piece {
      const char* name;
      const float* ptr;
      std::int64_t floats;
      bool held;
    };
    const Piece pieces[] = {
        {"A_qk", fw.A_qk, f.A, true}, {"A_qb", fw.A_qb, f.A, true}, {"A_ak", fw.A_ak, f.A, true},
        {"A_ab", fw.A_ab, f.A, e.fma_recompute}, {"A_ab_inv", fw.A_ab_inv, f.A, true},
        {"qg", fw.gated.qg, f.kdim, true}, {"kg", fw.gated.kg, f.kdim, true}, {"bg", fw.gated.bg, f.kdim, true},
        {"ag", fw.gated.ag, f.kdim, e.fma_recompute}, {"eg_last", fw.gated.eg_last, f.eg_last, true},
        {"w", fw.w, f.w, true}, {"u", fw.u, f.u, true}, {"v_new", fw.v_new, f.v_new, true}, {"h", fw.h, f.h, true},
        {"gi", fw.gi, f.gi, false}, {"ge", fw.ge, f.gi, false},
        {"dA_qk", ws.dA_qk, sz.A, true}, {"dA_qb", ws.dA_qb, sz.A, true}, {"dA_ak", ws.dA_ak, sz.A, true},
        {"dA_ab", ws.dA_ab, sz.A, true}, {"dh", ws.dh, sz.state, true}, {"dv_new", ws.dv_new, sz.vdim, true},
        {"dw", ws.dw, sz.kdim, true}, {"dv", ws.dv, sz.vdim, true}, {"dq", ws.dq, sz.kdim, e.totals},
        {"dk", ws.dk, sz.kdim, e.totals}, {"da", ws.da, sz.kdim, e.totals}, {"db", ws.db, sz.kdim, e.totals},
        {"dq_o", sh.dq_o, sz.kdim, true}, {"dv_new_o", sh.dv_new_o, sz.vdim, e.o_shares},
        {"dh_o", sh.dh_o, sz.state, e.o_shares}, {"dk_h", sh.dk_h, sz.kdim, true}, {"db_h", sh.db_h, sz.kdim, true},
        {"d_chunk_decay", sh.d_chunk_decay, sz.chunk_kdim, true}, {"da_wy", sh.da_wy, sz.kdim, true},
        {"dgk_A", sh.dgk_A, sz.kdim, e.dgk_A}};
    for (const Piece& piece : pieces) {
      if (!piece.held) {
        EXPECT_EQ(piece.ptr, nullptr) << piece.name << " is held, but the driver does not use it here";
        continue;
      }
      ASSERT_NE(piece.ptr, nullptr) << piece.name << " is not held, but the driver uses it here";
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(piece.ptr) % 256, 0u) << piece.name;
      EXPECT_LE(piece.ptr + piece.floats, buffer + sz.total()) << piece.name << " ends past sizes.total()";
    }
  }
  // The training shape of the bench (B8 T4096 H16 K = V = 64 bf16 C16): 4656 MiB of every stage's pieces, 2960 of them
  // the driver's.
  y = base;
  y.fwd.B = 8, y.fwd.T = 4096, y.fwd.H = 16;
  EXPECT_EQ(g::chunk_backward_workspace_floats(y, 16).total() * 4 >> 20, 4656);
  EXPECT_EQ(g::chunk_backward_workspace_floats(y, 16, driver).total() * 4 >> 20, 2960);
  // A driver-scope workspace lacks what another kernel choice needs: refused before any launch, naming the pieces.
  std::vector<float> host(g::chunk_backward_workspace_floats(base, 16, driver).total() + 64);
  float* buffer = host.data() + (64 - reinterpret_cast<std::uintptr_t>(host.data()) / 4 % 64) % 64;
  const g::BackwardWorkspace lean = g::carve_backward_workspace(base, 16, buffer, driver);
  g::BackwardOutputs out;
  out.dq = out.dk = out.dv = out.da = out.db = dummy;
  out.dgk = dummy;
  y = base;
  y.variant.a = g::BwdKernel::Fma;
  refused([&] { g::chunk_backward(y, 16, lean, out); }, "a tensor-core workspace, FMA A_bwd", "fp32 totals");
  y = base;
  y.variant.o = g::BwdKernel::Fma;
  refused([&] { g::chunk_backward(y, 16, lean, out); }, "a tensor-core workspace, FMA o_bwd", "dv_new_o and dh_o");
  y = base;
  y.variant.recompute = g::BwdKernel::Fma;
  refused([&] { g::chunk_backward(y, 16, lean, out); }, "a tensor-core workspace, FMA recompute", "A_ab and ag");
  refused([&] { g::chunk_backward_workspace_floats(base, 16, static_cast<g::BackwardWorkspaceScope>(7)); },
          "a scope outside the enum", "Stages or Driver");
}

TEST(GpuRefusalBackward, UnsupportedRequestsThrowBeforeLaunch) {
  // No device needed: every check runs before any launch.
  int dummy = 0;
  float* f = reinterpret_cast<float*>(&dummy);
  g::BackwardInputs in;
  g::ForwardInputs& x = in.fwd;
  x.B = 1, x.T = 8, x.H = 1, x.K = 64, x.V = 64;
  x.q = x.k = x.v = x.a = x.b = x.gk = &dummy;
  x.dtype = x.gk_dtype = E::BF16;
  in.d_o = &dummy;
  EXPECT_NO_THROW(g::check_backward(in, 16));
  g::BackwardInputs y = in;
  y.d_o = nullptr;
  refused([&] { g::check_backward(y, 16); }, "no do", "do");
  refused([&] { g::check_backward(in, 48); }, "chunk size 48", "16, 32 or 64");
  y = in;
  y.fwd.K = 129;
  refused([&] { g::check_backward(y, 16); }, "K > 128", "K and V");
  y = in;
  y.variant.wy = static_cast<g::BwdKernel>(7);
  refused([&] { g::check_backward(y, 16); }, "a backward kernel choice outside the enum", "variant.wy");
  g::GradientShares shares;  // all null
  refused([&] { g::chunk_o_bwd(in, 16, f, f, f, f, f, f, f, f, shares); }, "o_bwd without its shares", "dq_o");
  refused([&] { g::chunk_h_bwd(in, 16, f, f, f, f, f, f, f, f, f, f, nullptr, shares); },
          "h_bwd with o_bwd's shares nullptr (formed) but no OShareOperands", "OShareOperands needs both");
  {  // o_bwd's shares dv_new_o, dh_o: both read or both formed; formed only on h_bwd's tensor-core kernels
    g::GradientShares one = shares;
    one.dk_h = one.db_h = one.d_chunk_decay = f;
    one.dh_o = f;
    refused([&] { g::chunk_h_bwd(in, 16, f, f, f, f, f, f, f, f, f, f, nullptr, one); },
            "h_bwd with dh_o but not dv_new_o", "both (read) or neither");
    one.dh_o = nullptr;
    g::BackwardInputs fma = in;
    fma.variant.h = g::BwdKernel::Fma;
    refused([&] { g::chunk_h_bwd(fma, 16, f, f, f, f, f, f, f, f, f, f, nullptr, one, 0, g::OShareOperands{f, f}); },
            "h_bwd's FMA kernels with o_bwd's shares nullptr", "FMA kernels read o_bwd's shares");
    // Default where the tensor-core pair does not take the request (kg not 16-byte aligned): the FMA pair, refused
    alignas(16) float buf[8] = {};
    float* m = buf + 1;
    refused([&] { g::chunk_h_bwd(in, 16, m, buf, buf, buf, buf, buf, buf, buf, buf, buf, nullptr, one, 0,
                                 g::OShareOperands{buf, buf}); },
            "h_bwd Default on misaligned tensors with o_bwd's shares nullptr", "FMA kernels read o_bwd's shares");
  }
  refused([&] { g::chunk_WY_bwd(in, 16, f, f, f, f, f, f, f, f, f, shares); }, "WY_bwd without da_wy", "da_wy");
  refused([&] { g::chunk_A_bwd(in, 16, f, f, f, f, f, f, f, f, shares); }, "A_bwd without its shares", "dq_o");
  refused([&] { g::chunk_cumsum_bwd(in, 16, f, shares); }, "cumsum_bwd without its shares", "dgk_A");
  refused([&] { g::chunk_o_bwd(in, 16, nullptr, f, f, f, f, f, f, f, shares); }, "o_bwd without A_qk", "A_qk");
  // The tensor-core o_bwd and WY_bwd: an explicit TensorCores they do not take is refused, never replaced.
  alignas(16) float pool[8] = {};
  g::GradientShares all;
  all.dq_o = all.dv_new_o = all.dh_o = all.da_wy = pool;
  g::BackwardInputs tc = in;
  tc.fwd.v = tc.fwd.gk = tc.d_o = pool;
  tc.variant.o = tc.variant.wy = g::BwdKernel::TensorCores;
  EXPECT_TRUE(g::chunk_o_bwd_tensor_cores_supported(tc, 16));
  EXPECT_TRUE(g::chunk_WY_bwd_tensor_cores_supported(tc, 16));
  auto o_bwd = [&](const g::BackwardInputs& r, int C, float* ws) { g::chunk_o_bwd(r, C, ws, ws, ws, ws, ws, ws, ws, ws, all); };
  auto wy_bwd = [&](const g::BackwardInputs& r, int C, float* ws) {
    g::chunk_WY_bwd(r, C, ws, ws, ws, ws, ws, ws, ws, ws, ws, all);
  };
  auto both_refused = [&](const g::BackwardInputs& r, int C, float* ws, const char* why, bool o_too, bool wy_too,
                          const char* o_says, const char* wy_says) {
    if (o_too) refused([&] { o_bwd(r, C, ws); }, why, o_says);
    if (wy_too) refused([&] { wy_bwd(r, C, ws); }, why, wy_says);
  };
  const char* o_no = "tensor-core kernel of chunk_o_bwd";
  const char* wy_no = "tensor-core kernel of chunk_WY_bwd";
  y = tc;
  y.fwd.dtype = y.fwd.gk_dtype = E::F32;
  both_refused(y, 16, pool, "TensorCores with fp32 inputs", true, true, o_no, wy_no);
  both_refused(tc, 32, pool, "TensorCores at C = 32", true, true, o_no, wy_no);
  y = tc;
  y.fwd.K = 60;
  both_refused(y, 16, pool, "TensorCores with K = 60", true, true, o_no, wy_no);
  y = tc;
  y.fwd.V = 100;
  both_refused(y, 16, pool, "TensorCores with V = 100", true, true, o_no, wy_no);
  y = tc;
  y.fwd.v = reinterpret_cast<const char*>(pool) + 4;
  both_refused(y, 16, pool, "TensorCores with v not 16-byte aligned", true, true, o_no, wy_no);
  y = tc;
  y.fwd.gk = reinterpret_cast<const char*>(pool) + 4;
  both_refused(y, 16, pool, "TensorCores with gk not 16-byte aligned", true, true, o_no, wy_no);
  y = tc;
  y.d_o = reinterpret_cast<const char*>(pool) + 4;
  both_refused(y, 16, pool, "TensorCores with do not 16-byte aligned", true, false, o_no, wy_no);
  both_refused(tc, 16, pool + 1, "TensorCores with a workspace buffer not 16-byte aligned", true, true,
               "chunk_o_bwd's tensor-core kernel needs 16-byte aligned", "chunk_WY_bwd's tensor-core kernel needs 16-byte aligned");
  {  // h_bwd's tensor-core kernels: 16-bit inputs, C = 16, K and V multiples of 4, aligned tensors; an explicit
     // TensorCores outside that is refused, never replaced by the FMA kernels
    alignas(16) float buf[8] = {};
    float* a = buf;
    g::GradientShares sh;
    sh.dq_o = sh.dv_new_o = sh.dh_o = sh.dk_h = sh.db_h = sh.d_chunk_decay = sh.da_wy = sh.dgk_A = a;
    EXPECT_TRUE(g::chunk_h_bwd_tensor_cores_supported(in, 16));
    g::BackwardInputs z = in;
    z.variant.h = g::BwdKernel::TensorCores;
    auto h_bwd = [&](const g::BackwardInputs& r, int C, float* kg) {
      return [&r, C, kg, a, &sh] { g::chunk_h_bwd(r, C, kg, a, a, a, a, a, a, a, a, a, nullptr, sh); };
    };
    z.fwd.dtype = z.fwd.gk_dtype = E::F32;
    EXPECT_FALSE(g::chunk_h_bwd_tensor_cores_supported(z, 16));
    refused(h_bwd(z, 16, a), "h_bwd tensor cores with fp32 inputs", "tensor-core kernel of chunk_h_bwd");
    z = in;
    z.variant.h = g::BwdKernel::TensorCores;
    EXPECT_FALSE(g::chunk_h_bwd_tensor_cores_supported(z, 32));
    refused(h_bwd(z, 32, a), "h_bwd tensor cores at C = 32", "tensor-core kernel of chunk_h_bwd");
    z.fwd.K = 62;
    EXPECT_FALSE(g::chunk_h_bwd_tensor_cores_supported(z, 16));
    refused(h_bwd(z, 16, a), "h_bwd tensor cores with K not a multiple of 4", "tensor-core kernel of chunk_h_bwd");
    z = in;
    z.variant.h = g::BwdKernel::TensorCores;
    refused(h_bwd(z, 16, a + 1), "h_bwd tensor cores with kg not 16-byte aligned", "16-byte aligned");
  }
  // An explicit TensorCores for A_bwd where its kernel does not apply (fp32 inputs; chunk size 32): refused, never
  // replaced by the FMA kernel.
  g::GradientShares shares_a;
  shares_a.dq_o = shares_a.dv_new_o = shares_a.dh_o = shares_a.dk_h = shares_a.db_h = shares_a.d_chunk_decay =
      shares_a.da_wy = shares_a.dgk_A = f;
  y = in;
  y.variant.a = g::BwdKernel::TensorCores;
  EXPECT_TRUE(g::chunk_A_bwd_tensor_cores_supported(y, 16));
  y.fwd.dtype = y.fwd.gk_dtype = E::F32;
  EXPECT_FALSE(g::chunk_A_bwd_tensor_cores_supported(y, 16));
  refused([&] { g::chunk_A_bwd(y, 16, f, f, f, f, f, f, f, f, shares_a); }, "A_bwd TensorCores on fp32 inputs",
          "tensor-core kernel of chunk_A_bwd");
  refused([&] { g::chunk_A_cumsum_bwd(y, 16, f, f, f, f, f, f, f, f, f, shares_a, g::ABwdTotals{}); },
          "A_bwd + cumsum_bwd TensorCores on fp32 inputs", "tensor-core kernel of chunk_A_bwd");
  // The FMA A_bwd on 16-bit inputs forms fp32 totals before rounding them: without them, refused.
  y = in;
  y.variant.a = g::BwdKernel::Fma;
  refused([&] { g::chunk_A_cumsum_bwd(y, 16, f, f, f, f, f, f, f, f, f, shares_a, g::ABwdTotals{}); },
          "A_bwd + cumsum_bwd on the FMA kernel with 16-bit inputs and no fp32 totals", "ABwdTotals");
  y = in;
  y.variant.a = g::BwdKernel::TensorCores;
  EXPECT_FALSE(g::chunk_A_bwd_tensor_cores_supported(y, 32));
  refused([&] { g::chunk_A_bwd(y, 32, f, f, f, f, f, f, f, f, shares_a); }, "A_bwd TensorCores at C = 32",
          "tensor-core kernel of chunk_A_bwd");
  // cu_seqlens: the stages need the chunk numbering of their chunk size; the workspace sizes and the driver do not.
  y = in;
  y.fwd.cu_seqlens = reinterpret_cast<const std::int64_t*>(&dummy);
  y.fwd.num_sequences = 3;
  refused([&] { g::check_backward(y, 32); }, "cu_seqlens without chunk_offsets", "prepare_chunk_offsets");
  EXPECT_NO_THROW(g::chunk_backward_workspace_floats(y, 32));
  EXPECT_EQ(g::chunk_backward_workspace_floats(y, 32).forward.chunk_offsets, 4);
  y.fwd.chunk_offsets = reinterpret_cast<const std::int32_t*>(&dummy);
  y.fwd.chunk_offsets_C = 16;
  refused([&] { g::check_backward(y, 32); }, "chunk_offsets of another chunk size", "chunk_offsets_C");
  // The driver: every output but dh0, every workspace buffer.
  g::BackwardWorkspace ws;
  g::BackwardOutputs out;
  refused([&] { g::chunk_backward(in, 16, ws, out); }, "driver without outputs", "outputs");
  out.dq = out.dk = out.dv = out.da = out.db = &dummy;
  out.dgk = f;
  refused([&] { g::chunk_backward(in, 16, ws, out); }, "driver without a workspace", "workspace");
  refused([&] { g::carve_backward_workspace(in, 16, nullptr); }, "carve without a buffer", "buffer");
  // The tensor-core recompute: where it applies (16-bit inputs, C = 16, K % 4 == 0, V % 8 == 0, 16-byte aligned v),
  // and an explicit TensorCores refused elsewhere, before any launch.
  alignas(16) float aligned_dummy[4] = {};
  g::BackwardInputs r = in;
  r.fwd.q = r.fwd.k = r.fwd.v = r.fwd.a = r.fwd.b = r.fwd.gk = aligned_dummy;
  EXPECT_TRUE(g::chunk_recompute_tensor_cores_supported(r, 16)) << "bf16 K = V = 64 at C = 16";
  EXPECT_FALSE(g::chunk_recompute_tensor_cores_supported(r, 32)) << "C = 32";
  g::ForwardInputs& rf = r.fwd;
  rf.dtype = rf.gk_dtype = E::F32;
  EXPECT_FALSE(g::chunk_recompute_tensor_cores_supported(r, 16)) << "fp32 inputs";
  r.variant.recompute = g::BwdKernel::TensorCores;
  g::ChunkWorkspace none;  // never reached: refused first
  refused([&] { g::chunk_backward_recompute(r, 16, none); }, "tensor-core recompute with fp32 inputs",
          "chunk_recompute");
  rf.dtype = rf.gk_dtype = E::BF16;
  rf.V = 60;
  EXPECT_FALSE(g::chunk_recompute_tensor_cores_supported(r, 16)) << "V not a multiple of 8";
  refused([&] { g::chunk_backward_recompute(r, 16, none); }, "tensor-core recompute with V = 60", "chunk_recompute");
  rf.V = 64;
  rf.K = 62;
  EXPECT_FALSE(g::chunk_recompute_tensor_cores_supported(r, 16)) << "K not a multiple of 4";
  rf.K = 64;
  rf.v = reinterpret_cast<const char*>(aligned_dummy) + 4;
  EXPECT_FALSE(g::chunk_recompute_tensor_cores_supported(r, 16)) << "v not 16-byte aligned";
  rf.v = aligned_dummy;
  r.variant.recompute = static_cast<g::BwdKernel>(9);
  refused([&] { g::chunk_backward_recompute(r, 16, none); }, "a recompute choice outside the enum", "variant.recompute");
  // The kernels' backward options: both tensors or neither; HOStates skips o (no o operands) on the tensor-core kernel.
  float* af = aligned_dummy;
  const g::GatedOperands gated{af, af, af, af, af};
  refused([&] { g::chunk_A_WY(rf, 16, af, af, gated, af, af, 0, g::AWYBackwardTensors{af, nullptr}); },
          "AWYBackwardTensors without A_ab_inv", "both A_ak and A_ab_inv");
  refused([&] { g::chunk_h_o(rf, 16, nullptr, nullptr, nullptr, af, af, af, af, af, nullptr, nullptr, 0,
                             g::HOStates{af, nullptr}); },
          "HOStates without v_new", "both h and v_new");
  refused([&] { g::chunk_h_o(rf, 16, af, af, af, af, af, af, af, af, af, nullptr, 0, g::HOStates{af, af}); },
          "HOStates with o's operands", "must be nullptr");
  g::ForwardInputs fma = rf;
  fma.variant.ho = g::HOVariant::Fma2;
  refused([&] { g::chunk_h_o(fma, 16, nullptr, nullptr, nullptr, af, af, af, af, af, nullptr, nullptr, 0,
                             g::HOStates{af, af}); },
          "HOStates on the FMA kernel", "tensor-core kernel only");
  fma = rf;
  fma.V = 60;
  refused([&] { g::chunk_h_o(fma, 16, nullptr, nullptr, nullptr, af, af, af, af, af, nullptr, nullptr, 0,
                             g::HOStates{af, af}); },
          "HOStates with V = 60 (no tensor-core kernel)", "tensor-core kernel only");
}

}  // namespace
#endif
