// GPU forward kernels (gpu/dplr_gpu.hpp) against the exact reference (reference/reference.hpp, double).
// Fused recurrent and the staged chunk forward, on random inputs (fresh per case) of several shapes: H > 1
// with differing heads, K, V in {60, 64, 100, 128}, T not a multiple of the chunk, varlen (cu_seqlens, in both
// forms: empty sequences, sequences shorter than a chunk), h0, reverse, T = 1,
// gk in [-30, 0] and fla's logsigmoid distribution, fp32 / fp16 / bf16 (gk fp32 with 16-bit inputs).
// Outputs are poisoned (NaN) before every run and every element must come back finite. Accuracy is the
// relative RMSE against the reference; the bar for 16-bit inputs is 1.3x the correctly-rounded floor (the
// reference rounded once to the dtype), 1e-6 for fp32. Each chunk stage is also checked against the exact
// stage oracles (reference/chunk_stages.hpp, double; stage A's gated operands qg, kg, bg, ag, eg_last included), so
// that a bad stage is named. The fused chunk path
// (chunk_forward_fused: chunk_A_WY, tensor cores, where it applies, then chunk_h_o) is held to the same bar, with
// both variants of the staged A kernel (AVariant) and of the h+o kernel (HOVariant: the default, tensor cores
// where they apply; Fma2 and Fma1, the FMA kernel); chunk_A_WY alone against the stage oracles.
// Skips with a message when no CUDA device is present (or when built without CUDA).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"

#ifdef DPLR_NO_CUDA
TEST(Gpu, Skipped) { GTEST_SKIP() << "built without CUDA (DPLR_ENABLE_CUDA=OFF): no GPU kernels to test"; }
#else
#include <cuda_runtime_api.h>

#include "gpu/dplr_gpu.hpp"
#include "tests/gpu/gpu_test_cases.hpp"
#include "verify/gpu_harness.hpp"

namespace {
using dplr::DType;
namespace g = dplr::gpu;
using namespace dplr_gpu_test;

using dplr::core_dtype;
using DevBuf = dplr::DeviceBuffer;
void ck(cudaError_t e, const char* what) { dplr::check_cuda(e, what); }
std::vector<double> download(const DevBuf& d, std::size_t n, g::ElemType t) { return dplr::download_values(d.get(), n, t); }

using dplr::rel_rmse;

// Device copies of a problem's inputs (the harness's DeviceProblem) and the ForwardInputs that point at them.
struct DevProblem {
  dplr::DeviceProblem device;
  const g::ForwardInputs& in;
  DevProblem(const dplr::DplrProblem& p, const Case&) : device(p), in(device.inputs()) {}
};

struct Exact {
  std::vector<double> o, ht, o_floor;  // o_floor: o correctly rounded to the dtype
};
Exact exact(const dplr::DplrProblem& p, const Case& c) {
  dplr::ReferenceOptions opts{dplr::Precision{dplr::Arithmetic::Double, 0}};
  opts.backward = false;
  dplr::ReferenceResult r = dplr::run_reference(p, opts);
  Exact e;
  e.o = r.tensors.at("o").rounded();
  e.ht = r.tensors.at("ht").rounded();
  e.o_floor = e.o;
  for (auto& x : e.o_floor) x = dplr::round_to_dtype(x, to_core(c.dt));
  return e;
}

// The accuracy bar of o for the case's dtype.
void expect_accurate(const std::string& what, const std::vector<double>& o, const std::vector<double>& ht, const Exact& e,
                     const Case& c) {
  ASSERT_EQ(count_bad(o), 0) << what << ": o has unwritten or non-finite elements";
  ASSERT_EQ(count_bad(ht), 0) << what << ": ht has unwritten or non-finite elements";
  const double eo = rel_rmse(o, e.o), eh = rel_rmse(ht, e.ht), floor = rel_rmse(e.o_floor, e.o);
  const double bar = c.dt == g::ElemType::F32 ? 1e-6 : 1.3 * floor;
  std::printf("  %-9s %-44s o %.3e (floor %.3e, %.2fx)  ht %.3e\n", what.c_str(), c.name.c_str(), eo, floor,
              floor > 0 ? eo / floor : 0.0, eh);
  EXPECT_LE(eo, bar) << what << " " << c.name << ": o rel RMSE " << eo << " over the bar " << bar;
  EXPECT_LE(eh, c.dt == g::ElemType::F32 ? 1e-6 : 1e-5) << what << " " << c.name << ": ht rel RMSE " << eh;
}

std::vector<Case> recurrent_cases() {
  using E = g::ElemType;
  std::vector<Case> cs = {
      {"", 2, 37, 3, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},
      {"", 1, 50, 2, 60, 100, E::F16, false, Gate::Strong, true, true, {}},
      {"", 2, 64, 2, 128, 128, E::F32, false, Gate::Strong, false, false, {}},
      {"", 2, 200, 2, 64, 64, E::F32, false, Gate::Fla, true, true, {}},
      {"", 1, 100, 2, 100, 60, E::BF16, true, Gate::Fla, true, false, {0, 5, 40, 41, 100}},
      {"", 1, 100, 2, 64, 64, E::F32, false, Gate::Strong, true, true, {0, 33, 34, 100}},
      {"", 4, 1, 4, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},
      {"", 3, 1, 2, 128, 128, E::F16, true, Gate::Fla, true, false, {}},
      {"", 1, 80, 2, 64, 64, E::BF16, false, Gate::Pinned30, true, false, {}},
      // fla_peer.py's accuracy shape (B1 T512 H2 D64, no h0), for a side-by-side with fla.
      {"", 1, 512, 2, 64, 64, E::BF16, false, Gate::Fla, false, false, {}},
      {"", 1, 512, 2, 64, 64, E::BF16, false, Gate::Strong, false, false, {}},
  };
  for (auto& c : cs) c.name = describe(c);
  return cs;
}

std::vector<Case> chunk_cases() {
  using E = g::ElemType;
  std::vector<Case> cs = {
      {"", 2, 100, 3, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},
      {"", 1, 77, 2, 60, 100, E::F16, false, Gate::Strong, true, false, {}},
      {"", 1, 130, 2, 128, 128, E::F32, false, Gate::Strong, true, false, {}},
      {"", 2, 96, 2, 64, 64, E::F32, false, Gate::Fla, false, false, {}},
      {"", 1, 33, 2, 100, 60, E::BF16, true, Gate::Fla, true, false, {}},
      {"", 2, 1, 2, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},
      {"", 1, 70, 2, 64, 64, E::BF16, false, Gate::Pinned30, true, false, {}},
      {"", 1, 512, 2, 64, 64, E::BF16, false, Gate::Fla, false, false, {}},
      {"", 1, 512, 2, 64, 64, E::BF16, false, Gate::Strong, false, false, {}},
      // 16-bit K > 64 at C = 16: the tensor-core h+o kernel with KM = 128
      {"", 1, 150, 2, 128, 128, E::BF16, true, Gate::Strong, true, false, {}},
      {"", 2, 90, 2, 100, 128, E::F16, false, Gate::Fla, true, false, {}},
      // cu_seqlens (h0 and ht per sequence): empty sequences (first, inside, last), sequences shorter than a
      // chunk, lengths not multiples of C; bf16 K64 reaches the tensor-core h+o kernel at C = 16, fp32 K128 the
      // KMAX = 128 kernels, V = 100 with fp16 the 4-byte-copy h+o kernel.
      {"", 1, 200, 2, 64, 64, E::BF16, true, Gate::Fla, true, false, {0, 37, 37, 45, 130, 200}},
      {"", 1, 150, 2, 128, 128, E::F32, false, Gate::Strong, true, false, {0, 0, 10, 100, 150}},
      {"", 1, 90, 2, 60, 100, E::F16, false, Gate::Strong, true, false, {0, 3, 50, 90, 90}},
      {"", 1, 130, 2, 64, 64, E::F32, false, Gate::Fla, true, false, {0, 1, 65, 130}},
  };
  for (auto& c : cs) c.name = describe(c);
  return cs;
}

TEST(GpuRecurrent, MatchesExactReference) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 1000;
  for (const Case& c : recurrent_cases()) {
    SCOPED_TRACE(c.name);
    const dplr::DplrProblem p = make_problem(c, ++seed);
    const Exact e = exact(p, c);
    DevProblem d(p, c);
    const std::int64_t N = d.in.N();
    DevBuf o(c.B * c.T * c.H * c.V * g::elem_size(c.dt)), ht(N * c.H * c.K * c.V * 4);
    o.poison();
    ht.poison();
    g::fused_recurrent_forward(d.in, o.get(), ht.f(), c.reverse);
    ck(cudaDeviceSynchronize(), "recurrent");
    expect_accurate("recurrent", download(o, c.B * c.T * c.H * c.V, c.dt), download(ht, N * c.H * c.K * c.V, g::ElemType::F32),
                    e, c);
  }
}

// Stage tensors are fp32: compared with the fp64 oracle rounded once to fp32 (values below fp32's range, such
// as exp(gl) of a chunk of gk = -30, are zero there too).
void expect_stage(const char* stage, const char* name, const DevBuf& d, std::vector<double> oracle, double tol) {
  for (auto& v : oracle) v = dplr::round_to_dtype(v, DType::F32);
  const std::vector<double> x = download(d, oracle.size(), g::ElemType::F32);
  const std::int64_t bad = count_bad(x);
  EXPECT_EQ(bad, 0) << "stage " << stage << ": " << name << " has " << bad << " unwritten or non-finite elements";
  const double e = rel_rmse(x, oracle);
  EXPECT_LE(e, tol) << "stage " << stage << ": " << name << " rel RMSE " << e << " against the fp64 chunk form";
  std::printf("    stage %-6s %-8s rel RMSE %.3e\n", stage, name, e);
}

// The inputs the stages take for chunk size C: d.in, and with cu_seqlens the chunk numbering too
// (prepare_chunk_offsets into `offsets`, checked against the stage oracles' ChunkGrid). chunk_forward and
// chunk_forward_fused number the chunks themselves and take d.in.
g::ForwardInputs stage_inputs(const DevProblem& d, const dplr::DplrProblem& p, int C, DevBuf& offsets) {
  g::ForwardInputs in = d.in;
  if (!in.cu_seqlens) return in;
  const std::int64_t N = in.N();
  offsets = DevBuf((N + 1) * 4);
  offsets.poison();
  g::prepare_chunk_offsets(in, C, static_cast<std::int32_t*>(offsets.get()));
  std::vector<std::int32_t> got(N + 1);
  ck(cudaMemcpy(got.data(), offsets.get(), got.size() * 4, cudaMemcpyDeviceToHost), "chunk_offsets");
  const dplr::ChunkGrid grid = dplr::ChunkGrid::of(p, C);
  for (std::int64_t n = 0; n <= N; ++n)
    EXPECT_EQ(got[n], n < N ? grid.first_chunk[n] : grid.NT) << "chunk_offsets[" << n << "], C " << C;
  in.chunk_offsets = static_cast<const std::int32_t*>(offsets.get());
  in.chunk_offsets_C = C;
  return in;
}

TEST(GpuChunk, StagesAndOutputMatchExact) {
  REQUIRE_DEVICE();
  std::uint64_t seed = 5000;
  for (int C : {16, 32, 64})
    for (const Case& c : chunk_cases()) {
      SCOPED_TRACE(c.name + " C" + std::to_string(C));
      const dplr::DplrProblem p = make_problem(c, ++seed);
      const Exact e = exact(p, c);
      dplr::ChunkOptions copts;
      copts.backward = false;
      const dplr::ChunkStages ex = dplr::run_chunk_stages(p, C, dplr::Precision{dplr::Arithmetic::Double, 0}, copts);
      auto X = [&](const char* name) { return ex.tensors.at(name).rounded(); };
      DevProblem d(p, c);
      DevBuf offsets;
      const g::ForwardInputs in = stage_inputs(d, p, C, offsets);
      const std::int64_t N = d.in.N();
      const g::ChunkWorkspaceSizes sz = g::chunk_workspace_floats(d.in, C);
      DevBuf qg(sz.kdim * 4), kg(sz.kdim * 4), bg(sz.kdim * 4), ag(sz.kdim * 4), egl(sz.eg_last * 4);
      DevBuf gi(sz.gi * 4), ge(sz.gi * 4), Aqk(sz.A * 4), Aqb(sz.A * 4), Aak(sz.A * 4), Aab(sz.A * 4), Ainv(sz.A * 4),
          w(sz.w * 4), u(sz.u * 4), vnew(sz.v_new * 4), h(sz.h * 4), o(c.B * c.T * c.H * c.V * g::elem_size(c.dt)),
          ht(N * c.H * c.K * c.V * 4);
      for (DevBuf* b : {&qg, &kg, &bg, &ag, &egl, &gi, &ge, &Aqk, &Aqb, &Aak, &Aab, &Ainv, &w, &u, &vnew, &h, &o, &ht}) b->poison();
      // Each stage alone, on the stage tensors of the GPU's previous stages.
      g::chunk_cumsum(in, C, gi.f(), ge.f());
      g::GatedOperands gated;
      gated.qg = qg.f(), gated.kg = kg.f(), gated.bg = bg.f(), gated.ag = ag.f(), gated.eg_last = egl.f();
      g::chunk_A(in, C, Aqk.f(), Aqb.f(), Aak.f(), Aab.f(), gated);
      g::chunk_WY(in, C, Aab.f(), Aak.f(), ag.f(), Ainv.f(), w.f(), u.f());
      g::chunk_h(in, C, kg.f(), bg.f(), egl.f(), w.f(), u.f(), h.f(), vnew.f(), ht.f());
      g::chunk_o(in, C, Aqk.f(), Aqb.f(), qg.f(), vnew.f(), h.f(), o.get());
      ck(cudaDeviceSynchronize(), "chunk stages");
      const double tol = 1e-5;
      expect_stage("cumsum", "gi", gi, X("gi"), 1e-6);
      expect_stage("cumsum", "ge", ge, X("ge"), 1e-6);
      expect_stage("A", "A_qk", Aqk, X("A_qk"), tol);
      expect_stage("A", "A_qb", Aqb, X("A_qb"), tol);
      expect_stage("A", "A_ak", Aak, X("A_ak"), tol);
      expect_stage("A", "A_ab", Aab, X("A_ab"), tol);
      expect_stage("A", "qg", qg, X("qg"), tol);
      expect_stage("A", "kg", kg, X("kg"), tol);
      expect_stage("A", "bg", bg, X("bg"), tol);
      expect_stage("A", "ag", ag, X("ag"), tol);
      expect_stage("A", "eg_last", egl, X("eg_last"), tol);
      expect_stage("WY", "A_abinv", Ainv, X("A_ab_inv"), tol);
      expect_stage("WY", "w", w, X("w"), tol);
      expect_stage("WY", "u", u, X("u"), tol);
      expect_stage("h", "h", h, X("h"), tol);
      expect_stage("h", "v_new", vnew, X("v_new"), tol);
      {  // the direct (unfactored) A kernel too (AVariant::Direct; the factored one is C = 16's default)
        DevBuf Aqk3(sz.A * 4), Aqb3(sz.A * 4), Aak3(sz.A * 4), Aab3(sz.A * 4), qg3(sz.kdim * 4), kg3(sz.kdim * 4),
            bg3(sz.kdim * 4), ag3(sz.kdim * 4), egl3(sz.eg_last * 4);
        for (DevBuf* b : {&Aqk3, &Aqb3, &Aak3, &Aab3, &qg3, &kg3, &bg3, &ag3, &egl3}) b->poison();
        g::GatedOperands g3;
        g3.qg = qg3.f(), g3.kg = kg3.f(), g3.bg = bg3.f(), g3.ag = ag3.f(), g3.eg_last = egl3.f();
        g::ForwardInputs direct = in;
        direct.variant.a = g::AVariant::Direct;
        g::chunk_A(direct, C, Aqk3.f(), Aqb3.f(), Aak3.f(), Aab3.f(), g3);
        ck(cudaDeviceSynchronize(), "chunk_A direct");
        expect_stage("Adirect", "A_qk", Aqk3, X("A_qk"), tol);
        expect_stage("Adirect", "A_qb", Aqb3, X("A_qb"), tol);
        expect_stage("Adirect", "A_ak", Aak3, X("A_ak"), tol);
        expect_stage("Adirect", "A_ab", Aab3, X("A_ab"), tol);
        expect_stage("Adirect", "ag", ag3, X("ag"), tol);
      }
      if (g::chunk_A_WY_supported(in, C)) {  // stages A and WY fused (tensor cores), alone, on fresh (poisoned) buffers
        DevBuf qg2(sz.kdim * 4), kg2(sz.kdim * 4), bg2(sz.kdim * 4), egl2(sz.eg_last * 4), Aqk2(sz.A * 4), Aqb2(sz.A * 4),
            w2(sz.w * 4), u2(sz.u * 4);
        for (DevBuf* b : {&qg2, &kg2, &bg2, &egl2, &Aqk2, &Aqb2, &w2, &u2}) b->poison();
        g::GatedOperands g2;
        g2.qg = qg2.f(), g2.kg = kg2.f(), g2.bg = bg2.f(), g2.eg_last = egl2.f();
        g::chunk_A_WY(in, C, Aqk2.f(), Aqb2.f(), g2, w2.f(), u2.f());
        ck(cudaDeviceSynchronize(), "chunk_A_WY");
        expect_stage("A+WY", "A_qk", Aqk2, X("A_qk"), tol);
        expect_stage("A+WY", "A_qb", Aqb2, X("A_qb"), tol);
        expect_stage("A+WY", "qg", qg2, X("qg"), tol);
        expect_stage("A+WY", "kg", kg2, X("kg"), tol);
        expect_stage("A+WY", "bg", bg2, X("bg"), tol);
        expect_stage("A+WY", "eg_last", egl2, X("eg_last"), tol);
        expect_stage("A+WY", "w", w2, X("w"), tol);
        expect_stage("A+WY", "u", u2, X("u"), tol);
      }
      const std::vector<double> o1 = download(o, c.B * c.T * c.H * c.V, c.dt);
      expect_accurate("chunk" + std::to_string(C), o1, download(ht, N * c.H * c.K * c.V, g::ElemType::F32), e, c);
      // The orchestrator on a fresh workspace gives the same o.
      DevBuf buf(sz.total() * 4);
      buf.poison();
      o.poison();
      ht.poison();
      g::chunk_forward(d.in, C, g::carve_chunk_workspace(d.in, C, buf.f()), o.get(), ht.f());
      ck(cudaDeviceSynchronize(), "chunk_forward");
      EXPECT_EQ(download(o, c.B * c.T * c.H * c.V, c.dt), o1) << "chunk_forward differs from the stages run alone";
      const std::vector<double> ht1 = download(ht, N * c.H * c.K * c.V, g::ElemType::F32);
      // The fused path (h and o in one kernel where chunk_fused_ho; no h, no v_new buffers then), fresh workspace.
      buf.poison();
      o.poison();
      ht.poison();
      g::ChunkWorkspace wsf = g::carve_chunk_workspace(d.in, C, buf.f());
      const bool fused = g::chunk_fused_ho(d.in, C);
      if (fused) wsf.h = wsf.v_new = nullptr;
      // h+o: default (tensor cores for 16-bit inputs at C16), FMA 2 / 1 columns a thread
      for (g::HOVariant hv : {g::HOVariant::Default, g::HOVariant::Fma2, g::HOVariant::Fma1}) {
        const char* cols = g::variant_name(hv);
        g::ForwardInputs vin = d.in;
        vin.variant.ho = hv;
        buf.poison();
        o.poison();
        ht.poison();
        g::chunk_forward_fused(vin, C, wsf, o.get(), ht.f());
        ck(cudaDeviceSynchronize(), "chunk_forward_fused");
        const std::vector<double> of = download(o, c.B * c.T * c.H * c.V, c.dt);
        const std::vector<double> htf = download(ht, N * c.H * c.K * c.V, g::ElemType::F32);
        expect_accurate(std::string(fused ? "fusedho" : "fusedfb") + std::to_string(C) + "-" + cols, of, htf, e, c);
        // Printed, not asserted: the fused path sums in other orders (chunk_A_WY, the h+o kernels), so its o differs
        // from the staged o in the last bit in most runs; what holds is the accuracy bar above.
        std::printf("    fused path %s, h+o %s; o bitwise equal to the staged o: %s, ht: %s\n",
                    fused ? "h+o kernel" : "staged fallback", cols, of == o1 ? "yes" : "no", htf == ht1 ? "yes" : "no");
        if (!fused) break;
      }
    }
}

// The fp32-output mode (OutputMode::Fp32): o as each 16-bit path computes it, before the final rounding, against
// the exact o at fp32 bars: rel RMSE <= 1e-6 (issue 10), across gk in [-30, 0] (logsigmoid, U[-30, 0], pinned at
// -30). The rounded 16-bit o cannot show these errors: an internal error of 3e-4 moves a bf16 o's floor ratio only
// to 1.016. Every path: the fused recurrent (and its T = 1 decode kernel), the staged chunk form, the fused one
// with each h+o variant (tensor cores, FMA) at C = 16 and the FMA one at C = 64.
TEST(GpuFp32Output, SixteenBitPathsMeetFp32Bars) {
  REQUIRE_DEVICE();
  using E = g::ElemType;
  std::uint64_t seed = 9000;
  for (E dt : {E::BF16, E::F16})
    for (Gate gate : {Gate::Fla, Gate::Strong, Gate::Pinned30})
      for (auto [B, T, H, K, V] : {std::array<std::int64_t, 5>{2, 150, 3, 64, 64}, {1, 90, 2, 128, 128}, {4, 1, 2, 64, 64}}) {
        Case c{"", B, T, H, K, V, dt, true, gate, true, false, {}};
        c.name = describe(c);
        SCOPED_TRACE(c.name);
        const dplr::DplrProblem p = make_problem(c, ++seed);
        const Exact e = exact(p, c);
        DevProblem d(p, c);
        g::ForwardInputs in = d.in;
        in.output = g::OutputMode::Fp32;
        const std::int64_t N = in.N(), no = B * T * H * V, nh = N * H * K * V;
        DevBuf o(no * 4), ht(nh * 4);
        auto check = [&](const std::string& path) {
          ck(cudaDeviceSynchronize(), path.c_str());
          const std::vector<double> of = download(o, no, E::F32);
          ASSERT_EQ(count_bad(of), 0) << path << ": o has unwritten or non-finite elements";
          const double err = rel_rmse(of, e.o), ht_err = rel_rmse(download(ht, nh, E::F32), e.ht);
          std::printf("  fp32-output %-16s %-44s o %.3e  ht %.3e\n", path.c_str(), c.name.c_str(), err, ht_err);
          EXPECT_LE(err, 1e-6) << path << " " << c.name << ": fp32 o rel RMSE " << err;
          EXPECT_LE(ht_err, 1e-6) << path << " " << c.name << ": ht rel RMSE " << ht_err;
        };
        o.poison();
        ht.poison();
        g::fused_recurrent_forward(in, o.get(), ht.f(), false);
        check(T == 1 ? "decode" : "recurrent");
        if (T == 1) continue;
        for (int C : {16, 64}) {
          const g::ChunkWorkspaceSizes sz = g::chunk_workspace_floats(in, C);
          DevBuf buf(sz.total() * 4);
          buf.poison();
          o.poison();
          ht.poison();
          g::chunk_forward(in, C, g::carve_chunk_workspace(in, C, buf.f()), o.get(), ht.f());
          check("staged C" + std::to_string(C));
          for (g::HOVariant hv : {g::HOVariant::Default, g::HOVariant::Fma2}) {
            if (C != 16 && hv != g::HOVariant::Default) continue;
            g::ForwardInputs vin = in;
            vin.variant.ho = hv;
            buf.poison();
            o.poison();
            ht.poison();
            g::chunk_forward_fused(vin, C, g::carve_chunk_workspace(vin, C, buf.f()), o.get(), ht.f());
            check("fused C" + std::to_string(C) + " " + g::variant_name(hv));
          }
        }
      }
}

// Many short packed sequences (a third of them empty): the chunk numbering's scan runs over several tiles of
// 4096 sequences, the sequence search of the per-chunk kernels is deep, and N passes grid z's 65535 (the
// sequential kernels put the sequences on grid x).
TEST(GpuChunk, ManyShortSequences) {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(77);
  std::uniform_int_distribution<int> len(-3, 6);
  Case c{"", 1, 0, 1, 8, 8, g::ElemType::F32, false, Gate::Fla, true, false, {0}};
  for (int n = 0; n < 70000; ++n) c.cu.push_back(c.cu.back() + std::max(len(rng), 0));
  c.T = c.cu.back();
  c.name = "B1 T" + std::to_string(c.T) + " H1 K8 V8 fp32 h0, 70000 sequences of 0..6 tokens";
  const dplr::DplrProblem p = make_problem(c, 4242);
  const Exact e = exact(p, c);
  DevProblem d(p, c);
  const std::int64_t N = d.in.N();
  for (int C : {16, 64}) {
    SCOPED_TRACE("C" + std::to_string(C));
    DevBuf offsets;
    stage_inputs(d, p, C, offsets);  // checks the numbering against the host's
    DevBuf buf(g::chunk_workspace_floats(d.in, C).total() * 4), o(c.T * c.V * 4), ht(N * c.K * c.V * 4);
    for (bool fused : {false, true}) {
      buf.poison();
      o.poison();
      ht.poison();
      const g::ChunkWorkspace ws = g::carve_chunk_workspace(d.in, C, buf.f());
      if (fused) g::chunk_forward_fused(d.in, C, ws, o.get(), ht.f());
      else g::chunk_forward(d.in, C, ws, o.get(), ht.f());
      ck(cudaDeviceSynchronize(), "chunk forward, many sequences");
      expect_accurate((fused ? "fused" : "chunk") + std::to_string(C), download(o, c.T * c.V, c.dt),
                      download(ht, N * c.K * c.V, g::ElemType::F32), e, c);
    }
  }
}

// Every kernel once on small shapes (for compute-sanitizer racecheck/memcheck runs, which are slow). Asserts that
// every launch is accepted and that o and ht come back fully written and finite; accuracy is the other tests' job.
TEST(GpuSanitize, EveryKernelOnce) {
  REQUIRE_DEVICE();
  using E = g::ElemType;
  std::uint64_t seed = 9000;
  for (const Case& c0 : {Case{"", 1, 19, 2, 60, 100, E::BF16, true, Gate::Strong, true, true, {}},
                         Case{"", 1, 1, 2, 128, 128, E::F16, false, Gate::Fla, true, false, {}},
                         Case{"", 4, 1, 2, 64, 64, E::BF16, false, Gate::Fla, true, false, {}},  // the decode kernel
                         Case{"", 1, 30, 1, 64, 64, E::F32, false, Gate::Fla, true, false, {0, 7, 30}},
                         // varlen with empty sequences (first and inside) and one shorter than a chunk; bf16 K64:
                         // the tensor-core h+o kernel at C = 16
                         Case{"", 1, 45, 2, 64, 64, E::BF16, true, Gate::Fla, true, false, {0, 0, 5, 5, 45}}}) {
    Case c = c0;
    c.name = describe(c);
    const dplr::DplrProblem p = make_problem(c, ++seed);
    DevProblem d(p, c);
    const std::int64_t no = c.B * c.T * c.H * c.V, nht = d.in.N() * c.H * c.K * c.V;
    DevBuf o(no * g::elem_size(c.dt)), ht(nht * 4);
    auto expect_written = [&](const std::string& what) {
      EXPECT_EQ(count_bad(download(o, no, c.dt)), 0) << what << " " << c.name << ": o has unwritten or non-finite elements";
      EXPECT_EQ(count_bad(download(ht, nht, g::ElemType::F32)), 0) << what << " " << c.name << ": ht has unwritten or non-finite elements";
    };
    o.poison();
    ht.poison();
    ASSERT_NO_THROW(g::fused_recurrent_forward(d.in, o.get(), ht.f(), c.reverse));
    ck(cudaDeviceSynchronize(), "recurrent");
    expect_written("recurrent");
    for (int C : {16, 32, 64}) {
      SCOPED_TRACE(testing::Message() << "C" << C);
      DevBuf buf(g::chunk_workspace_floats(d.in, C).total() * 4);
      o.poison();
      ht.poison();
      ASSERT_NO_THROW(g::chunk_forward(d.in, C, g::carve_chunk_workspace(d.in, C, buf.f()), o.get(), ht.f()));
      ck(cudaDeviceSynchronize(), "chunk_forward");
      expect_written("chunk_forward");
      g::ChunkWorkspace wsf = g::carve_chunk_workspace(d.in, C, buf.f());
      if (g::chunk_fused_ho(d.in, C)) wsf.h = wsf.v_new = nullptr;
      o.poison();
      ht.poison();
      ASSERT_NO_THROW(g::chunk_forward_fused(d.in, C, wsf, o.get(), ht.f()));
      ck(cudaDeviceSynchronize(), "chunk_forward_fused");
      expect_written("chunk_forward_fused");
    }
  }
}

TEST(GpuRefusal, UnsupportedInputsThrowBeforeLaunch) {
  // No device needed: the checks run before any launch.
  int dummy = 0;
  g::ForwardInputs in;
  in.B = 1, in.T = 8, in.H = 1, in.K = 64, in.V = 64;
  in.q = in.k = in.v = in.a = in.b = in.gk = &dummy;
  in.dtype = in.gk_dtype = g::ElemType::BF16;
  EXPECT_NO_THROW(g::check_inputs(in));
  auto bad = [&](g::ForwardInputs x, const char* why) { EXPECT_THROW(g::check_inputs(x), g::Unsupported) << why; };
  g::ForwardInputs x = in;
  x.K = 129;
  bad(x, "K > 128");
  x = in;
  x.V = 0;
  bad(x, "V = 0");
  x = in;
  x.gk_dtype = g::ElemType::F16;
  bad(x, "gk fp16 with bf16 inputs");
  x = in;
  x.q = nullptr;
  bad(x, "null q");
  x = in;
  x.B = 2;
  x.cu_seqlens = reinterpret_cast<const std::int64_t*>(&dummy);
  x.num_sequences = 1;
  bad(x, "cu_seqlens with B > 1");
  EXPECT_THROW(g::check_chunk(in, 48), g::Unsupported);
  // Kernel variants: a value outside the enums is refused, never taken as the default; an explicit variant the
  // request cannot take is refused too.
  x = in;
  x.variant.a = static_cast<g::AVariant>(7);
  bad(x, "AVariant 7");
  x = in;
  x.variant.ho = static_cast<g::HOVariant>(-1);
  bad(x, "HOVariant -1");
  x = in;
  x.output = static_cast<g::OutputMode>(2);
  bad(x, "OutputMode 2");
  {
    float* f = reinterpret_cast<float*>(&dummy);
    g::GatedOperands gated;
    gated.qg = gated.kg = gated.bg = gated.ag = gated.eg_last = f;
    x = in;
    x.variant.a = g::AVariant::Factored;
    EXPECT_THROW(g::chunk_A(x, 32, f, f, f, f, gated), g::Unsupported) << "factored A at C = 32";
    x = in;
    x.dtype = x.gk_dtype = g::ElemType::F32;
    x.variant.ho = g::HOVariant::TensorCores;
    EXPECT_THROW(g::chunk_h_o(x, 16, f, f, f, f, f, f, f, f, f, f), g::Unsupported) << "tensor-core h+o with fp32";
  }
  // cu_seqlens: the stages need the chunk numbering for their chunk size; the workspace and the drivers' checks do not.
  x = in;
  x.cu_seqlens = reinterpret_cast<const std::int64_t*>(&dummy);
  x.num_sequences = 3;
  try {
    g::check_chunk(x, 64);
    ADD_FAILURE() << "check_chunk took cu_seqlens without chunk_offsets";
  } catch (const g::Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("prepare_chunk_offsets"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(g::chunk_workspace_floats(x, 64));
  EXPECT_EQ(g::chunk_workspace_floats(x, 64).chunk_offsets, 4);
  EXPECT_EQ(g::num_chunks(x, 16), 8 / 16 + 3) << "the upper bound T / C + N";
  EXPECT_NO_THROW(g::chunk_fused_ho(x, 16));
  x.chunk_offsets = reinterpret_cast<const std::int32_t*>(&dummy);
  x.chunk_offsets_C = 32;
  EXPECT_THROW(g::check_chunk(x, 64), g::Unsupported) << "chunk_offsets of another chunk size";
  x.chunk_offsets_C = 64;
  EXPECT_NO_THROW(g::check_chunk(x, 64));
  {
    float* f = reinterpret_cast<float*>(&dummy);
    g::GatedOperands gated;
    gated.qg = gated.kg = gated.bg = gated.eg_last = f;
    x.chunk_offsets_C = 16;
    EXPECT_TRUE(g::chunk_A_WY_supported(x, 16)) << "chunk_A_WY with cu_seqlens and its chunk offsets";
    x.K = 128;
    EXPECT_TRUE(g::chunk_A_WY_supported(x, 16)) << "chunk_A_WY with K = 128 (two warps a chunk)";
    x.K = 63;
    EXPECT_FALSE(g::chunk_A_WY_supported(x, 16)) << "chunk_A_WY with K odd";
    EXPECT_THROW(g::chunk_A_WY(x, 16, f, f, gated, f, f), g::Unsupported) << "chunk_A_WY with K odd";
    x.K = 64;
    x.dtype = x.gk_dtype = g::ElemType::F32;
    EXPECT_FALSE(g::chunk_A_WY_supported(x, 16)) << "chunk_A_WY with fp32 inputs (true fp32 arithmetic: chunk_A)";
    x.dtype = x.gk_dtype = g::ElemType::BF16;
    EXPECT_FALSE(g::chunk_A_WY_supported(x, 32)) << "chunk_A_WY at C = 32";
  }
  x.cu_seqlens = nullptr;
  EXPECT_THROW(g::prepare_chunk_offsets(x, 16, reinterpret_cast<std::int32_t*>(&dummy)), g::Unsupported)
      << "prepare_chunk_offsets without cu_seqlens";
  EXPECT_EQ(g::chunk_workspace_floats(in, 16).chunk_offsets, 0);
  EXPECT_NO_THROW(g::check_chunk(in, 32));
  try {
    g::check_chunk(in, 48);
    ADD_FAILURE() << "check_chunk took chunk size 48";
  } catch (const g::Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("16, 32 or 64"), std::string::npos) << e.what();
  }
}

}  // namespace
#endif
