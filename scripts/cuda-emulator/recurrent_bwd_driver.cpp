// Runs gpu::fused_recurrent_backward, emulated on the CPU (README.md), on cases like test_gpu_recurrent_bwd's and
// checks every gradient against the exact reference (double) with that test's bars: one line a case, "!!" after a
// gradient over its bar, "[n bad]" for unwritten (NaN-poisoned) or non-finite elements. Argument: one case's index
// (default: all). EMU_DUMP=PREFIX writes each case's raw outputs to PREFIX.<seed> (run.sh compares thread orders).
// DPLR_EMULATE_PLANT=NAME runs every case with that planted defect (run.sh then compiles with -DDPLR_PLANT_DEFECTS).
#include <cstring>
#include <limits>
#include "core/dtype.hpp"
#include "reference/reference.hpp"
#include "tests/gpu/gpu_test_cases.hpp"

using namespace dplr_gpu_test;
using dplr::DType;

struct HostBuf {
  std::vector<unsigned char> bytes;
  void* get() { return bytes.data(); }
  float* f() { return reinterpret_cast<float*>(bytes.data()); }
};
HostBuf to_host(const std::vector<double>& v, g::ElemType t) {
  HostBuf b;
  const std::size_t sz = g::elem_size(t);
  b.bytes.resize(std::max<std::size_t>(v.size() * sz, 4));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (t == g::ElemType::F32) { float f = static_cast<float>(v[i]); std::memcpy(&b.bytes[4 * i], &f, 4); }
    else { std::uint16_t h = t == g::ElemType::F16 ? dplr::double_to_fp16_bits(v[i]) : dplr::double_to_bf16_bits(v[i]); std::memcpy(&b.bytes[2 * i], &h, 2); }
  }
  return b;
}
HostBuf poisoned(std::size_t n, g::ElemType t) { HostBuf b; b.bytes.assign(std::max<std::size_t>(n * g::elem_size(t), 4), 0xff); return b; }
std::vector<double> from_host(HostBuf& b, std::size_t n, g::ElemType t) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (t == g::ElemType::F32) { float f; std::memcpy(&f, &b.bytes[4 * i], 4); x[i] = f; }
    else { std::uint16_t h; std::memcpy(&h, &b.bytes[2 * i], 2); x[i] = t == g::ElemType::F16 ? dplr::fp16_bits_to_double(h) : dplr::bf16_bits_to_double(h); }
  }
  return x;
}

int failures = 0;
void run_case(Case c, bool with_dht, std::uint64_t seed) {
  c.name = describe(c) + (with_dht ? " dht" : "");
  dplr::DplrProblem p = make_problem(c, seed);
  std::mt19937_64 rng(seed ^ 0x5bd1e995u);
  std::normal_distribution<double> nd(0.0, 1.0);
  const DType dt = to_core(c.dt);
  dplr::Tensor grad_o{dt, p.v.shape, std::vector<double>(p.v.values.size())};
  for (auto& x : grad_o.values) x = dplr::round_to_dtype(nd(rng), dt);
  p.grad_o = grad_o;
  const std::int64_t N = p.num_sequences();
  if (with_dht) {
    dplr::Tensor dht{DType::F32, {N, c.H, c.K, c.V}, std::vector<double>(N * c.H * c.K * c.V)};
    for (auto& x : dht.values) x = dplr::round_to_dtype(nd(rng), DType::F32);
    p.grad_ht = dht;
  }
  dplr::ReferenceOptions opts{dplr::Precision{dplr::Arithmetic::Double, 0}};
  const dplr::ExactTensorMap exact = dplr::run_reference(p, opts).tensors;

  const g::ElemType gdt = c.gk_f32 ? g::ElemType::F32 : c.dt;
  HostBuf q = to_host(p.q.values, c.dt), k = to_host(p.k.values, c.dt), v = to_host(p.v.values, c.dt),
          a = to_host(p.a.values, c.dt), b = to_host(p.b.values, c.dt), gk = to_host(p.gk.values, gdt),
          dov = to_host(p.grad_o->values, c.dt);
  HostBuf h0, dht;
  std::vector<std::int64_t> cu = p.cu_seqlens;
  g::ForwardInputs in;
  in.B = c.B, in.T = c.T, in.H = c.H, in.K = c.K, in.V = c.V;
  in.dtype = c.dt, in.gk_dtype = gdt;
  in.q = q.get(), in.k = k.get(), in.v = v.get(), in.a = a.get(), in.b = b.get(), in.gk = gk.get();
  in.scale = static_cast<float>(p.scale);
  in.planted = emulated_planted_defect();
  if (p.h0) { h0 = to_host(p.h0->values, g::ElemType::F32); in.h0 = h0.f(); }
  if (!cu.empty()) { in.cu_seqlens = cu.data(); in.num_sequences = N; }
  g::RecurrentBackwardArgs args;
  args.grad_o = dov.get();
  if (p.grad_ht) { dht = to_host(p.grad_ht->values, g::ElemType::F32); args.dht = dht.f(); }
  args.reverse = c.reverse;
  const std::size_t nk = c.B * c.T * c.H * c.K, nv = c.B * c.T * c.H * c.V, ns = N * c.H * c.K * c.V;
  HostBuf dq = poisoned(nk, c.dt), dk = poisoned(nk, c.dt), da = poisoned(nk, c.dt), db = poisoned(nk, c.dt),
          dvv = poisoned(nv, c.dt), dgk = poisoned(nk, g::ElemType::F32), dh0 = poisoned(ns, g::ElemType::F32);
  args.dq = dq.get(), args.dk = dk.get(), args.da = da.get(), args.db = db.get(), args.dv = dvv.get();
  args.dgk = dgk.f();
  args.dh0 = dh0.f();
  HostBuf ws = poisoned(g::fused_recurrent_backward_workspace(in).total(), g::ElemType::F32);
  args.workspace = ws.f();
  g::fused_recurrent_backward(in, args);
  struct Out { const char* name; HostBuf* buf; std::size_t n; g::ElemType t; };
  Out outs[] = {{"dq", &dq, nk, c.dt}, {"dk", &dk, nk, c.dt}, {"dv", &dvv, nv, c.dt}, {"da", &da, nk, c.dt},
                {"db", &db, nk, c.dt}, {"dgk", &dgk, nk, g::ElemType::F32}, {"dh0", &dh0, ns, g::ElemType::F32}};
  std::printf("%-60s", c.name.c_str());
  for (auto& o : outs) {
    const std::vector<double> x = from_host(*o.buf, o.n, o.t), ref = exact.at(o.name).rounded();
    const std::int64_t bad = count_bad(x);
    const double err = dplr::rel_rmse(x, ref);
    double bar = 1e-6, floor = 0;
    const bool in_dtype = std::string(o.name) != "dgk" && std::string(o.name) != "dh0";
    if (c.dt != g::ElemType::F32 && in_dtype) {
      std::vector<double> r = ref;
      for (auto& e : r) e = dplr::round_to_dtype(e, dt);
      floor = dplr::rel_rmse(r, ref);
      bar = 1.3 * floor;
    } else if (c.dt != g::ElemType::F32) bar = 1e-5;
    const bool ok = bad == 0 && err <= bar;
    if (!ok) ++failures;
    if (floor > 0) std::printf(" %s %.1e(%.2fx)%s", o.name, err, err / floor, ok ? "" : "!!");
    else std::printf(" %s %.1e%s", o.name, err, ok ? "" : "!!");
    if (bad) std::printf("[%lld bad]", static_cast<long long>(bad));
  }
  std::printf("\n");
  std::fflush(stdout);
  if (const char* dump = std::getenv("EMU_DUMP")) {
    FILE* f = std::fopen((std::string(dump) + "." + std::to_string(seed)).c_str(), "wb");
    for (auto& o : outs) std::fwrite(o.buf->bytes.data(), 1, o.n * g::elem_size(o.t), f);
    std::fclose(f);
  }
}

int main(int argc, char** argv) {
  using E = g::ElemType;
  const int which = argc > 1 ? std::atoi(argv[1]) : -1;
  std::vector<std::pair<Case, bool>> cases = {
      {{"", 2, 37, 3, 64, 64, E::BF16, false, Gate::Fla, true, false, {}}, true},
      {{"", 1, 50, 2, 60, 100, E::F16, false, Gate::Strong, true, true, {}}, true},
      {{"", 1, 64, 1, 128, 128, E::F32, false, Gate::Strong, false, false, {}}, true},
      {{"", 1, 140, 1, 32, 48, E::F32, false, Gate::Fla, true, true, {}}, false},
      {{"", 1, 129, 1, 60, 60, E::F32, false, Gate::Pinned30, true, false, {}}, true},
      {{"", 3, 1, 2, 32, 100, E::F16, true, Gate::Fla, true, false, {}}, false},
      {{"", 1, 100, 2, 20, 60, E::BF16, true, Gate::Fla, true, false, {0, 5, 40, 41, 100}}, true},
      {{"", 1, 100, 1, 64, 64, E::F32, false, Gate::Strong, true, true, {0, 0, 33, 34, 100}}, true},
      {{"", 1, 200, 1, 32, 48, E::F32, false, Gate::Fla, true, false, {0, 70, 70, 71, 200}}, false},
      {{"", 1, 300, 1, 16, 64, E::BF16, true, Gate::Strong, false, true, {0, 100, 300, 300}}, true},
      {{"", 2, 70, 2, 8, 8, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 2, 200, 2, 64, 64, E::F32, false, Gate::Fla, true, true, {}}, false},
      {{"", 1, 130, 2, 100, 100, E::F32, false, Gate::Strong, true, false, {}}, true},
      {{"", 1, 300, 1, 128, 64, E::BF16, false, Gate::Strong, false, true, {}}, true},
      {{"", 1, 300, 2, 64, 64, E::BF16, true, Gate::Strong, false, true, {0, 100, 300, 300}}, true},
      {{"", 3, 1, 2, 128, 128, E::F16, true, Gate::Fla, true, false, {}}, false},
  };
  for (std::size_t i = 0; i < cases.size(); ++i)
    if (which < 0 || which == static_cast<int>(i)) run_case(cases[i].first, cases[i].second, 12000 + i);
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
