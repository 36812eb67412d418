// The staged chunk backward under the host emulation (run.sh): every backward stage tensor of the driver (its
// workspace) against the exact stage oracles (<= 1e-5 relative RMSE), and the driver's gradients against the
// exact reference (fp32 inputs <= 1e-6; 16-bit inputs <= 1.3x the correctly-rounded floor, dgk and dh0 <= 1e-5),
// and the fused forward's o and ht (its tensor-core kernels at C = 16 with 16-bit inputs) against the same reference.
// Cases as tests/gpu/test_gpu_backward.cpp's, smaller (one std::thread per CUDA thread is slow). Exit status 1 on
// any failure. Arguments: one case index (default all, or -1), then one chunk size (default all). DPLR_EMULATE_DIGEST=1 also prints a hash of every tensor's bits
// (to show that a rewritten kernel computes bitwise what the one before it did). DPLR_EMULATE_PLANT=NAME runs every case
// with that planted defect (gpu::planted_defect_name; run.sh then compiles the kernels with -DDPLR_PLANT_DEFECTS).
#include "emu.hpp"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include "core/dtype.hpp"
#include "gpu/dplr_gpu.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"
#include "io/tensor_io.hpp"
#include "tests/gpu/gpu_test_cases.hpp"

namespace dplr {
DType core_dtype(gpu::ElemType t) { return t == gpu::ElemType::F32 ? DType::F32 : t == gpu::ElemType::F16 ? DType::F16 : DType::BF16; }
}  // namespace dplr
using namespace dplr_gpu_test;
using E = g::ElemType;

struct Host {
  std::vector<unsigned char> bytes;
  void* p() { return bytes.data(); }
  float* f() { return reinterpret_cast<float*>(bytes.data()); }
};
Host up(const std::vector<double>& v, E t) {
  Host h;
  const std::size_t sz = g::elem_size(t);
  h.bytes.resize(v.size() * sz + emu::kSlack);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (t == E::F32) { float f = float(v[i]); std::memcpy(&h.bytes[4 * i], &f, 4); }
    else { std::uint16_t b = t == E::F16 ? dplr::double_to_fp16_bits(v[i]) : dplr::double_to_bf16_bits(v[i]); std::memcpy(&h.bytes[2 * i], &b, 2); }
  }
  return h;
}
Host buf(std::size_t floats) { Host h; h.bytes.assign(floats * 4 + emu::kSlack, 0xff); return h; }
std::vector<double> down(const void* p, std::size_t n, E t) {
  std::vector<double> x(n);
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (t == E::F32) { float f; std::memcpy(&f, b + 4 * i, 4); x[i] = f; }
    else { std::uint16_t h; std::memcpy(&h, b + 2 * i, 2); x[i] = t == E::F16 ? dplr::fp16_bits_to_double(h) : dplr::bf16_bits_to_double(h); }
  }
  return x;
}
double rel(const std::vector<double>& x, const std::vector<double>& r) {
  double a = 0, b = 0;
  for (std::size_t i = 0; i < x.size(); ++i) { a += (x[i] - r[i]) * (x[i] - r[i]); b += r[i] * r[i]; }
  return b > 0 ? std::sqrt(a / b) : std::sqrt(a);
}
long bad(const std::vector<double>& x) { long n = 0; for (double v : x) n += !std::isfinite(v); return n; }

int failures = 0;
void check(const std::string& what, const std::vector<double>& x, const std::vector<double>& ref, double bar) {
  const double e = rel(x, ref);
  const long nb = bad(x);
  const bool ok = e <= bar && nb == 0 && x.size() == ref.size();
  if (!ok) ++failures;
  std::printf("    %-22s %.3e (bar %.1e)%s%s\n", what.c_str(), e, bar, nb ? " NONFINITE" : "", ok ? "" : "  <-- FAIL");
}

// `backward_check --case FILE C`: the staged and the fused forward on a case file's inputs (16-bit inputs take the
// tensor-core kernels at C = 16), o and ht against the exact reference: rel RMSE and the fraction of o's elements
// that are not the correctly rounded exact value (what the property sweep's misrounding gate counts).
int forward_case(const char* path, int C) {
  const dplr::TensorFile file = dplr::read_tensor_file(path);
  double scale = std::numeric_limits<double>::quiet_NaN();
  if (auto it = file.metadata.find("scale"); it != file.metadata.end()) scale = std::stod(it->second);
  const dplr::DplrProblem p = dplr::problem_from_tensors(file.tensors, scale, false, path);
  const auto& sh = p.shape;
  const E dt = p.q.dtype == DType::F32 ? E::F32 : p.q.dtype == DType::F16 ? E::F16 : E::BF16;
  const E gdt = p.gk.dtype == DType::F32 ? E::F32 : dt;
  Host q = up(p.q.values, dt), k = up(p.k.values, dt), v = up(p.v.values, dt), a = up(p.a.values, dt),
       b = up(p.b.values, dt), gk = up(p.gk.values, gdt);
  Host h0 = p.h0 ? up(p.h0->values, E::F32) : Host{};
  g::ForwardInputs f;
  f.B = sh.B, f.T = sh.T, f.H = sh.H, f.K = sh.K, f.V = sh.V, f.dtype = dt, f.gk_dtype = gdt, f.scale = float(p.scale);
  f.q = q.p(), f.k = k.p(), f.v = v.p(), f.a = a.p(), f.b = b.p(), f.gk = gk.p();
  if (p.h0) f.h0 = h0.f();
  std::vector<std::int64_t> cu = p.cu_seqlens;
  if (!cu.empty()) f.cu_seqlens = cu.data(), f.num_sequences = std::int64_t(cu.size()) - 1;
  const std::int64_t N = p.num_sequences(), nv = sh.B * sh.T * sh.H * sh.V, ns = N * sh.H * sh.K * sh.V;
  const dplr::ReferenceResult ex = dplr::run_reference(p, dplr::ReferenceOptions{dplr::Precision{dplr::Arithmetic::Double, 0}});
  const std::vector<double> ro = ex.tensors.at("o").rounded(), rht = ex.tensors.at("ht").rounded();
  std::printf("%s: B%lld T%lld H%lld K%lld V%lld %s C%d\n", path, (long long)sh.B, (long long)sh.T, (long long)sh.H,
              (long long)sh.K, (long long)sh.V, g::elem_type_name(dt), C);
  for (int fused = 0; fused < 2; ++fused) {
    Host wb = buf(g::chunk_workspace_floats(f, C).total()), o = buf(nv), ht = buf(ns);
    const g::ChunkWorkspace ws = g::carve_chunk_workspace(f, C, wb.f());
    (fused ? g::chunk_forward_fused : g::chunk_forward)(f, C, ws, o.p(), ht.f(), 0);
    const std::vector<double> x = down(o.p(), nv, dt);
    long mis = 0;
    for (std::size_t i = 0; i < x.size(); ++i) mis += x[i] != dplr::round_to_dtype(ro[i], dplr::core_dtype(dt));
    std::printf("  %-6s o rel RMSE %.4e, misrounded %.3f%%; ht rel RMSE %.4e\n", fused ? "fused" : "staged", rel(x, ro),
                100.0 * mis / double(x.size()), rel(down(ht.p(), ns, E::F32), rht));
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--case") return forward_case(argv[2], argc > 3 ? std::atoi(argv[3]) : 16);
  const g::PlantedDefect planted = emulated_planted_defect();
  if (planted != g::PlantedDefect::None) std::printf("PLANTED defect %s\n", g::planted_defect_name(planted));
  const int only = argc > 1 ? std::atoi(argv[1]) : -1, only_C = argc > 2 ? std::atoi(argv[2]) : 0;
  struct BC { Case c; bool dht; };
  std::vector<BC> cs = {
      {{"", 1, 37, 2, 60, 100, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 2, 40, 2, 64, 64, E::F32, false, Gate::Fla, true, false, {}}, false},
      {{"", 1, 33, 1, 128, 128, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 30, 2, 100, 60, E::F32, false, Gate::Pinned30, false, false, {}}, true},
      {{"", 2, 1, 2, 64, 64, E::F32, false, Gate::Fla, true, false, {}}, true},
      {{"", 1, 35, 2, 100, 60, E::BF16, true, Gate::Fla, true, false, {}}, true},
      {{"", 2, 20, 1, 64, 64, E::F16, false, Gate::Strong, false, false, {}}, false},
      {{"", 1, 90, 2, 64, 40, E::F32, false, Gate::Fla, true, false, {0, 0, 5, 50, 50, 90}}, true},
      {{"", 1, 50, 1, 60, 100, E::BF16, true, Gate::Strong, true, false, {0, 3, 40, 50, 50}}, true},
      // K, V not multiples of 4 (the kernels' 4-wide loops end in a scalar remainder)
      {{"", 1, 45, 2, 37, 45, E::BF16, true, Gate::Strong, true, false, {}}, true},
      {{"", 1, 40, 1, 70, 99, E::F32, false, Gate::Fla, true, false, {}}, true},
      // 16-bit, K and V multiples of 8 (the tensor-core o_bwd and WY_bwd at C = 16): K = V = 128, T not a multiple
      // of 16; gk pinned at -30 with fp32 gk; varlen with empty and short sequences; K != V (64 x 128, 128 x 64)
      {{"", 1, 40, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      {{"", 2, 37, 1, 64, 64, E::BF16, true, Gate::Pinned30, false, false, {}}, false},
      {{"", 1, 60, 2, 64, 64, E::BF16, false, Gate::Fla, true, false, {0, 0, 5, 37, 37, 60}}, true},
      {{"", 1, 35, 1, 64, 128, E::F16, true, Gate::Strong, true, false, {}}, true},
      {{"", 1, 35, 1, 128, 64, E::BF16, false, Gate::Fla, false, false, {}}, false},
      // 16-bit inputs at C = 16 run the tensor-core h_bwd: K = V = 128, varlen with empty sequences under gk = -30,
      // T not a multiple of 16
      {{"", 1, 40, 1, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 60, 2, 64, 64, E::BF16, true, Gate::Pinned30, true, false, {0, 0, 5, 40, 40, 60}}, true},
      {{"", 2, 40, 1, 64, 64, E::BF16, false, Gate::Fla, false, false, {}}, true},
      // the tensor-core A_bwd's range (16-bit inputs at C = 16): every gate pinned at -30, and K = V = 128
      {{"", 1, 40, 2, 64, 64, E::BF16, false, Gate::Pinned30, true, false, {}}, true},
      {{"", 1, 35, 1, 128, 128, E::BF16, false, Gate::Strong, true, false, {}}, true},
      // 16-bit inputs the recompute's tensor-core path takes at C = 16 (K % 4 == 0, V % 8 == 0): T not a multiple of
      // 16, K = V = 128 (two warps a chunk in chunk_A_WY, KM = 128 in h), K != V both ways, K below the h kernel's
      // KM, varlen with empty and short sequences, gk pinned at -30
      {{"", 1, 40, 2, 64, 64, E::BF16, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 33, 1, 128, 128, E::BF16, true, Gate::Fla, true, false, {}}, true},
      {{"", 1, 30, 1, 128, 64, E::F16, false, Gate::Strong, false, false, {}}, true},
      {{"", 1, 37, 1, 32, 96, E::BF16, false, Gate::Fla, true, false, {}}, false},
      {{"", 1, 50, 1, 64, 64, E::BF16, false, Gate::Strong, true, false, {0, 0, 3, 20, 20, 50}}, true},
      {{"", 1, 35, 2, 64, 64, E::F16, false, Gate::Pinned30, false, false, {}}, true},
      // 7 chunks (WYPipe's multi-chunk walk, where chosen: blocks of 4 and 3)
      {{"", 1, 100, 1, 64, 64, E::BF16, false, Gate::Strong, true, false, {}}, true},
      // K = V = 128 16-bit varlen with empty and short sequences (the tensor-core kernels' K = 128 layouts)
      {{"", 1, 70, 2, 128, 128, E::BF16, false, Gate::Strong, true, false, {0, 0, 9, 9, 70}}, true},
  };
  std::uint64_t seed = 100;
  for (int C : {16, 32, 64})
    for (std::size_t ci = 0; ci < cs.size(); ++ci) {
      if ((only >= 0 && int(ci) != only) || (only_C != 0 && C != only_C)) continue;
      Case c = cs[ci].c;
      c.name = describe(c);
      const dplr::DplrProblem p = make_backward_problem(c, cs[ci].dht, ++seed);
      std::printf("%s%s C%d (case %zu)\n", c.name.c_str(), cs[ci].dht ? " dht" : "", C, ci);
      const E dt = c.dt, gdt = c.gk_f32 ? E::F32 : c.dt;
      Host q = up(p.q.values, dt), k = up(p.k.values, dt), v = up(p.v.values, dt), a = up(p.a.values, dt),
           b = up(p.b.values, dt), gk = up(p.gk.values, gdt), d_o = up(p.grad_o->values, dt);
      Host h0 = p.h0 ? up(p.h0->values, E::F32) : Host{}, dht = p.grad_ht ? up(p.grad_ht->values, E::F32) : Host{};
      g::BackwardInputs in;
      g::ForwardInputs& f = in.fwd;
      f.B = c.B, f.T = c.T, f.H = c.H, f.K = c.K, f.V = c.V, f.dtype = dt, f.gk_dtype = gdt, f.scale = float(p.scale);
      f.q = q.p(), f.k = k.p(), f.v = v.p(), f.a = a.p(), f.b = b.p(), f.gk = gk.p();
      f.planted = planted;
      if (p.h0) f.h0 = h0.f();
      std::vector<std::int64_t> cu = p.cu_seqlens;
      if (!cu.empty()) f.cu_seqlens = cu.data(), f.num_sequences = std::int64_t(cu.size()) - 1;
      in.d_o = d_o.p();
      if (p.grad_ht) in.dht = dht.f();
      const g::BackwardWorkspaceSizes sz = g::chunk_backward_workspace_floats(in, C);
      const std::int64_t N = p.num_sequences(), nk = c.B * c.T * c.H * c.K, nv = c.B * c.T * c.H * c.V;
      // The driver on a NaN-poisoned workspace; its workspace holds every stage's tensors (fp32).
      Host w = buf(sz.total());
      const g::BackwardWorkspace ws = g::carve_backward_workspace(in, C, w.f());
      Host oq = buf(nk), ok = buf(nk), oa = buf(nk), ob = buf(nk), ov = buf(nv), og = buf(nk), oh = buf(N * c.H * c.K * c.V);
      g::BackwardOutputs out;
      out.dq = oq.p(), out.dk = ok.p(), out.da = oa.p(), out.db = ob.p(), out.dv = ov.p(), out.dgk = og.f(), out.dh0 = oh.f();
      g::chunk_backward(in, C, ws, out);
      {  // The driver on a Driver-scope workspace (only the pieces it uses here): the same gradients, bitwise.
        const auto scope = g::BackwardWorkspaceScope::Driver;
        const std::int64_t lean_floats = g::chunk_backward_workspace_floats(in, C, scope).total();
        Host lean = buf(lean_floats);
        const g::BackwardWorkspace lws = g::carve_backward_workspace(in, C, lean.f(), scope);
        Host lq = buf(nk), lk = buf(nk), la = buf(nk), lb = buf(nk), lv = buf(nv), lg = buf(nk), lh = buf(N * c.H * c.K * c.V);
        g::BackwardOutputs lout;
        lout.dq = lq.p(), lout.dk = lk.p(), lout.da = la.p(), lout.db = lb.p(), lout.dv = lv.p(), lout.dgk = lg.f(),
        lout.dh0 = lh.f();
        g::chunk_backward(in, C, lws, lout);
        const std::size_t esz = g::elem_size(dt);
        const bool same = std::memcmp(lq.p(), oq.p(), nk * esz) == 0 && std::memcmp(lk.p(), ok.p(), nk * esz) == 0 &&
                          std::memcmp(la.p(), oa.p(), nk * esz) == 0 && std::memcmp(lb.p(), ob.p(), nk * esz) == 0 &&
                          std::memcmp(lv.p(), ov.p(), nv * esz) == 0 && std::memcmp(lg.p(), og.p(), nk * 4) == 0 &&
                          std::memcmp(lh.p(), oh.p(), N * c.H * c.K * c.V * 4) == 0;
        if (!same) ++failures;
        std::printf("    driver on a Driver-scope workspace (%.0f%% of Stages): gradients %s\n",
                    100.0 * double(lean_floats) / double(sz.total()),
                    same ? "bitwise the Stages workspace's" : "DIFFER from the Stages workspace's  <-- FAIL");
      }
      const g::ChunkWorkspace& fw = ws.forward;
      // Stages A_bwd and cumsum_bwd one by one (the stage checks' path; chunk_backward fuses them where A_bwd runs on
      // tensor cores, writing dq, dk, da, db in the dtype and no fp32 totals) on the driver's workspace: their dgk must be
      // bitwise the driver's, their fp32 totals (checked against the oracles below) rounded once the driver's outputs.
      g::BackwardInputs sin = in;
      if (f.cu_seqlens) sin.fwd.chunk_offsets = fw.chunk_offsets, sin.fwd.chunk_offsets_C = C;
      Host sq = buf(nk), sk = buf(nk), sa = buf(nk), sb = buf(nk), sg = buf(nk);
      g::chunk_A_bwd(sin, C, ws.dA_qk, ws.dA_qb, ws.dA_ak, ws.dA_ab, sq.f(), sk.f(), sa.f(), sb.f(), ws.shares);
      g::chunk_cumsum_bwd(sin, C, sg.f(), ws.shares);
      {
        const bool same = std::memcmp(sg.p(), og.p(), nk * 4) == 0;
        if (!same) ++failures;
        std::printf("    stages A_bwd, cumsum_bwd alone: dgk %s\n", same ? "bitwise the driver's" : "DIFFERS from the driver's  <-- FAIL");
        const std::pair<const char*, std::pair<Host*, void*>> totals[] = {
            {"dq", {&sq, out.dq}}, {"dk", {&sk, out.dk}}, {"da", {&sa, out.da}}, {"db", {&sb, out.db}}};
        for (const auto& [name, tp] : totals) {
          std::vector<double> r = down(tp.first->p(), nk, E::F32);
          for (auto& y : r) y = dplr::round_to_dtype(y, dplr::core_dtype(dt));
          const bool eq = down(tp.second, nk, dt) == r;
          if (!eq) ++failures;
          std::printf("    driver's %s: %s\n", name, eq ? "bitwise the stage's fp32 total rounded once" : "DIFFERS from the stage's total rounded  <-- FAIL");
        }
      }
      const dplr::ChunkStages oracle = dplr::run_chunk_stages(p, C, dplr::Precision{dplr::Arithmetic::Double, 0});
      const dplr::ChunkGrid grid = dplr::ChunkGrid::of(p, C);
      const std::size_t na = c.B * c.T * c.H * C, nh = grid.rows * grid.NT * c.H * c.K * c.V;
      // The driver's WY_bwd rounds dv's total straight into out.dv (ws.dv keeps the o_bwd + h_bwd shares): stage
      // WY_bwd alone on the driver's workspace forms the fp32 total into ws.dv (checked below as the stage's dv);
      // out.dv must be it rounded once, and the stage's dA_ab, dA_ak, da_wy the driver's, bitwise.
      {
        Host sab = buf(na), sak = buf(na), sda = buf(nk);
        g::GradientShares ssh = ws.shares;
        ssh.da_wy = sda.f();
        g::chunk_WY_bwd(sin, C, fw.A_ab_inv, fw.A_ak, fw.w, fw.u, ws.dw, ws.dv_new, sab.f(), sak.f(), ws.dv, ssh);
        std::vector<double> rounded = down(ws.dv, nv, E::F32);
        for (auto& y : rounded) y = dplr::round_to_dtype(y, dplr::core_dtype(dt));
        const bool dv_same = down(out.dv, nv, dt) == rounded;
        const bool rest_same = std::memcmp(sab.p(), ws.dA_ab, na * 4) == 0 && std::memcmp(sak.p(), ws.dA_ak, na * 4) == 0 &&
                               std::memcmp(sda.p(), ws.shares.da_wy, nk * 4) == 0;
        failures += !dv_same + !rest_same;
        std::printf("    stage WY_bwd alone: out.dv %s; dA_ab, dA_ak, da_wy %s\n",
                    dv_same ? "bitwise its dv rounded once" : "DIFFERS from its dv rounded once  <-- FAIL",
                    rest_same ? "bitwise the driver's" : "DIFFER from the driver's  <-- FAIL");
      }
      std::map<std::string, std::vector<double>> got = {
          {"dA_qk", down(ws.dA_qk, na, E::F32)}, {"dA_qb", down(ws.dA_qb, na, E::F32)}, {"dA_ak", down(ws.dA_ak, na, E::F32)},
          {"dA_ab", down(ws.dA_ab, na, E::F32)}, {"dh", down(ws.dh, nh, E::F32)}, {"dv_new", down(ws.dv_new, nv, E::F32)},
          {"dw", down(ws.dw, nk, E::F32)}, {"dv", down(ws.dv, nv, E::F32)},
          // dq, dk, da, db: stage A_bwd's fp32 totals, from the stage run alone (the driver writes no totals where it fuses)
          {"dq", down(sq.p(), nk, E::F32)}, {"dk", down(sk.p(), nk, E::F32)}, {"da", down(sa.p(), nk, E::F32)},
          {"db", down(sb.p(), nk, E::F32)},
          {"dgk", down(og.p(), nk, E::F32)}, {"dh0", down(oh.p(), N * c.H * c.K * c.V, E::F32)},
          {"h", down(fw.h, nh, E::F32)}, {"v_new", down(fw.v_new, nv, E::F32)}, {"w", down(fw.w, nk, E::F32)},
          // the rest of the recomputed forward the backward stages read (not A_ab, ag: the tensor-core recompute
          // keeps them in shared memory)
          {"A_qk", down(fw.A_qk, na, E::F32)}, {"A_qb", down(fw.A_qb, na, E::F32)}, {"A_ak", down(fw.A_ak, na, E::F32)},
          {"A_ab_inv", down(fw.A_ab_inv, na, E::F32)}, {"qg", down(fw.gated.qg, nk, E::F32)},
          {"kg", down(fw.gated.kg, nk, E::F32)}, {"bg", down(fw.gated.bg, nk, E::F32)},
          {"eg_last", down(fw.gated.eg_last, grid.rows * grid.NT * c.H * c.K, E::F32)}, {"u", down(fw.u, nv, E::F32)}};
      if (std::getenv("DPLR_EMULATE_DIGEST")) {  // bit patterns of every tensor, to compare two trees' kernels
        auto digest = [](const std::vector<double>& x) {
          std::uint64_t hsh = 1469598103934665603ull;
          for (double y : x) {
            std::uint64_t b;
            std::memcpy(&b, &y, 8);
            hsh = (hsh ^ b) * 1099511628211ull;
          }
          return hsh;
        };
        for (const auto& [name, x] : got) std::printf("    digest %-8s %016llx\n", name.c_str(), (unsigned long long)digest(x));
        const std::pair<const char*, std::pair<void*, std::size_t>> outs[] = {
            {"out.dq", {out.dq, nk}}, {"out.dk", {out.dk, nk}}, {"out.da", {out.da, nk}}, {"out.db", {out.db, nk}},
            {"out.dv", {out.dv, nv}}};
        for (const auto& [name, pn] : outs)
          std::printf("    digest %-8s %016llx\n", name, (unsigned long long)digest(down(pn.first, pn.second, dt)));
      }
      for (auto& [name, x] : got) {
        std::vector<double> r = oracle.tensors.at(name).rounded();
        for (auto& y : r) y = dplr::round_to_dtype(y, DType::F32);
        check("stage " + dplr::chunk_stage_of(name) + " " + name, x, r, 1e-5);
      }
      // The gradients against the exact reference.
      const dplr::ReferenceResult ex = dplr::run_reference(p, dplr::ReferenceOptions{dplr::Precision{dplr::Arithmetic::Double, 0}});
      const std::map<std::string, std::pair<void*, std::size_t>> grads = {
          {"dq", {out.dq, nk}}, {"dk", {out.dk, nk}}, {"da", {out.da, nk}}, {"db", {out.db, nk}}, {"dv", {out.dv, nv}}};
      for (const auto& [name, pn] : grads) {
        const std::vector<double> x = down(pn.first, pn.second, dt), r = ex.tensors.at(name).rounded();
        std::vector<double> fl = r;
        for (auto& y : fl) y = dplr::round_to_dtype(y, dplr::core_dtype(dt));
        const double floor = rel(fl, r);
        check("grad " + name + (dt == E::F32 ? "" : " (1.3x floor)"), x, r, dt == E::F32 ? 1e-6 : 1.3 * floor);
      }
      check("grad dgk", down(og.p(), nk, E::F32), ex.tensors.at("dgk").rounded(), dt == E::F32 ? 1e-6 : 1e-5);
      check("grad dh0", down(oh.p(), N * c.H * c.K * c.V, E::F32), ex.tensors.at("dh0").rounded(), dt == E::F32 ? 1e-6 : 1e-5);
      // Stages o_bwd, h_bwd, WY_bwd one by one with every share formed and read (the stage checks' path; the driver
      // leaves dh_o and dv_new_o to h_bwd's tensor-core kernels) on the driver's recomputed forward: every tensor they
      // write that the driver keeps must be bitwise the driver's.
      {
        g::BackwardInputs sin = in;
        if (f.cu_seqlens) sin.fwd.chunk_offsets = fw.chunk_offsets, sin.fwd.chunk_offsets_C = C;
        const std::size_t nc = grid.rows * grid.NT * c.H * c.K, n0 = N * c.H * c.K * c.V;
        Host qk = buf(na), qb = buf(na), ab = buf(na), ak = buf(na), dv = buf(nv), dh = buf(nh), dvn = buf(nv),
             dw = buf(nk), h0g = buf(n0), dqo = buf(nk), dvno = buf(nv), dho = buf(nh), dkh = buf(nk), dbh = buf(nk),
             dcd = buf(nc), dawy = buf(nk);
        g::GradientShares sh = ws.shares;
        sh.dq_o = dqo.f(), sh.dv_new_o = dvno.f(), sh.dh_o = dho.f(), sh.dk_h = dkh.f(), sh.db_h = dbh.f();
        sh.d_chunk_decay = dcd.f(), sh.da_wy = dawy.f();
        const g::GatedOperands& gt = fw.gated;
        g::chunk_o_bwd(sin, C, fw.A_qk, fw.A_qb, gt.qg, fw.v_new, fw.h, qk.f(), qb.f(), dv.f(), sh);
        // h_bwd forming dh_o, dv_new_o itself (both nullptr) where both stages run on tensor cores: bitwise the same
        // as reading o_bwd's (the same MMAs in the same order)
        const bool formed = g::chunk_o_bwd_tensor_cores_supported(sin, C) && g::chunk_h_bwd_tensor_cores_supported(sin, C);
        Host fdv = buf(nv), fdh = buf(nh), fdvn = buf(nv), fdw = buf(nk), fh0 = buf(n0), fdkh = buf(nk), fdbh = buf(nk),
             fdcd = buf(nc);
        if (formed) {
          std::memcpy(fdv.p(), dv.p(), nv * 4);
          g::GradientShares fsh = sh;
          fsh.dh_o = fsh.dv_new_o = nullptr, fsh.dk_h = fdkh.f(), fsh.db_h = fdbh.f(), fsh.d_chunk_decay = fdcd.f();
          g::chunk_h_bwd(sin, C, gt.kg, gt.bg, gt.eg_last, fw.w, fw.h, fw.v_new, fdh.f(), fdvn.f(), fdw.f(), fdv.f(),
                         fh0.f(), fsh, 0, g::OShareOperands{gt.qg, fw.A_qb});
        }
        g::chunk_h_bwd(sin, C, gt.kg, gt.bg, gt.eg_last, fw.w, fw.h, fw.v_new, dh.f(), dvn.f(), dw.f(), dv.f(), h0g.f(), sh);
        if (formed) {
          const std::tuple<const char*, const void*, const void*, std::size_t> fsame[] = {
              {"dh", fdh.p(), dh.p(), nh}, {"dv_new", fdvn.p(), dvn.p(), nv}, {"dw", fdw.p(), dw.p(), nk},
              {"dh0", fh0.p(), h0g.p(), n0}, {"dv", fdv.p(), dv.p(), nv}, {"dk_h", fdkh.p(), dkh.p(), nk},
              {"db_h", fdbh.p(), dbh.p(), nk}, {"d_chunk_decay", fdcd.p(), dcd.p(), nc}};
          std::string fdiffer;
          for (const auto& [name, x, y, n] : fsame)
            if (std::memcmp(x, y, n * 4) != 0) fdiffer += std::string(" ") + name;
          if (!fdiffer.empty()) ++failures;
          std::printf("    stage h_bwd alone forming dh_o, dv_new_o: %s\n",
                      fdiffer.empty() ? "bitwise h_bwd reading o_bwd's" : ("DIFFERS from reading them:" + fdiffer + "  <-- FAIL").c_str());
        }
        g::chunk_WY_bwd(sin, C, fw.A_ab_inv, fw.A_ak, fw.w, fw.u, dw.f(), dvn.f(), ab.f(), ak.f(), dv.f(), sh);
        const std::tuple<const char*, const void*, const void*, std::size_t> same[] = {
            {"dA_qk", qk.p(), ws.dA_qk, na}, {"dA_qb", qb.p(), ws.dA_qb, na}, {"dh", dh.p(), ws.dh, nh},
            {"dv_new", dvn.p(), ws.dv_new, nv}, {"dw", dw.p(), ws.dw, nk}, {"dh0", h0g.p(), oh.p(), n0},
            {"dv", dv.p(), ws.dv, nv}, {"dA_ab", ab.p(), ws.dA_ab, na}, {"dA_ak", ak.p(), ws.dA_ak, na},
            {"dq_o", dqo.p(), ws.shares.dq_o, nk}, {"dk_h", dkh.p(), ws.shares.dk_h, nk},
            {"db_h", dbh.p(), ws.shares.db_h, nk}, {"d_chunk_decay", dcd.p(), ws.shares.d_chunk_decay, nc},
            {"da_wy", dawy.p(), ws.shares.da_wy, nk}};
        std::string differ;
        for (const auto& [name, x, y, n] : same)
          if (std::memcmp(x, y, n * 4) != 0) differ += std::string(" ") + name;
        if (!differ.empty()) ++failures;
        std::printf("    stages o_bwd, h_bwd, WY_bwd alone (every share): %s\n",
                    differ.empty() ? "bitwise the driver's" : ("DIFFER from the driver's:" + differ + "  <-- FAIL").c_str());
      }
      // The fused forward (its tensor-core kernels where they apply: 16-bit inputs at C = 16) on the same inputs.
      {
        Host fwb = buf(g::chunk_workspace_floats(f, C).total()), fo = buf(nv), fht = buf(N * c.H * c.K * c.V);
        const g::ChunkWorkspace fws = g::carve_chunk_workspace(f, C, fwb.f());
        g::chunk_forward_fused(f, C, fws, fo.p(), fht.f());
        const std::vector<double> r = ex.tensors.at("o").rounded();
        std::vector<double> fl = r;
        for (auto& y : fl) y = dplr::round_to_dtype(y, dplr::core_dtype(dt));
        check(std::string("fused fwd o") + (dt == E::F32 ? "" : " (1.3x floor)"), down(fo.p(), nv, dt), r,
              dt == E::F32 ? 1e-6 : 1.3 * rel(fl, r));
        check("fused fwd ht", down(fht.p(), N * c.H * c.K * c.V, E::F32), ex.tensors.at("ht").rounded(), 1e-5);
      }
    }
  std::printf("%d failures, %lld launches\n", failures, emu::launches);
  return failures != 0;
}
