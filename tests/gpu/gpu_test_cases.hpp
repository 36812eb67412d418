// The random cases of the GPU tests (test_gpu_forward, test_gpu_recurrent_bwd, test_gpu_backward): a Case names a shape, dtype, gate
// distribution and options; make_problem draws its inputs, every value exact in its dtype (q, v normal; k and a
// unit-norm per token and head, b = -a, fla's contractive test inputs; heads differ; gk from the Gate). Also the
// device check the tests skip on. Needs CUDA (included only where DPLR_NO_CUDA is not defined).
#pragma once
#include <gtest/gtest.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "gpu/dplr_gpu.hpp"
#include "reference/problem.hpp"
#include "verify/gpu_harness.hpp"

namespace dplr_gpu_test {
using dplr::DType;
namespace g = dplr::gpu;

inline DType to_core(g::ElemType t) { return dplr::core_dtype(t); }

inline bool have_device(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = std::string("no CUDA device: cudaGetDeviceCount failed (") + cudaGetErrorString(e) + ")";
    return false;
  }
  if (n == 0) {
    *why = "no CUDA device: cudaGetDeviceCount returned 0";
    return false;
  }
  return true;
}
#define REQUIRE_DEVICE()                       \
  do {                                         \
    std::string why;                           \
    if (!::dplr_gpu_test::have_device(&why)) GTEST_SKIP() << why; \
  } while (0)


enum class Gate { Fla, Strong, Pinned30 };
inline const char* gate_name(Gate g) { return g == Gate::Fla ? "logsigmoid" : g == Gate::Strong ? "U[-30,0]" : "-30"; }

struct Case {
  std::string name;
  std::int64_t B, T, H, K, V;
  g::ElemType dt;
  bool gk_f32 = false;
  Gate gate = Gate::Fla;
  bool h0 = false;
  bool reverse = false;
  std::vector<std::int64_t> cu;  // varlen when set
};

// Random problem in the contract's layout, every value exactly representable in its dtype.
inline dplr::DplrProblem make_problem(const Case& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(-30.0, 0.0);
  const DType dt = to_core(c.dt), gdt = c.gk_f32 ? DType::F32 : dt;
  dplr::DplrProblem p;
  p.shape = {c.B, c.T, c.H, c.K, c.V};
  p.scale = 1.0 / std::sqrt(double(c.K));
  p.reverse = c.reverse;
  p.cu_seqlens = c.cu;
  const std::int64_t nk = c.B * c.T * c.H * c.K, nv = c.B * c.T * c.H * c.V;
  auto mk = [&](std::int64_t n, DType t, std::vector<std::int64_t> shape) {
    dplr::Tensor x;
    x.dtype = t;
    x.shape = std::move(shape);
    x.values.resize(n);
    return x;
  };
  const std::vector<std::int64_t> sk{c.B, c.T, c.H, c.K}, sv{c.B, c.T, c.H, c.V};
  p.q = mk(nk, dt, sk);
  p.k = mk(nk, dt, sk);
  p.a = mk(nk, dt, sk);
  p.b = mk(nk, dt, sk);
  p.gk = mk(nk, gdt, sk);
  p.v = mk(nv, dt, sv);
  for (auto& x : p.q.values) x = dplr::round_to_dtype(nd(rng), dt);
  for (auto& x : p.v.values) x = dplr::round_to_dtype(nd(rng), dt);
  // k and a unit-norm per (token, head) (fla's test), b = -a: a contractive transition. Heads differ.
  for (std::int64_t row = 0; row < c.B * c.T * c.H; ++row) {
    double nk2 = 0, na2 = 0;
    std::vector<double> kk(c.K), aa(c.K);
    for (std::int64_t i = 0; i < c.K; ++i) {
      kk[i] = nd(rng);
      aa[i] = nd(rng);
      nk2 += kk[i] * kk[i];
      na2 += aa[i] * aa[i];
    }
    for (std::int64_t i = 0; i < c.K; ++i) {
      p.k.values[row * c.K + i] = dplr::round_to_dtype(kk[i] / std::sqrt(nk2), dt);
      const double a = dplr::round_to_dtype(aa[i] / std::sqrt(na2), dt);
      p.a.values[row * c.K + i] = a;
      p.b.values[row * c.K + i] = -a;
    }
  }
  for (auto& x : p.gk.values) {
    double v = c.gate == Gate::Fla ? -std::log1p(std::exp(-nd(rng))) : c.gate == Gate::Strong ? ud(rng) : -30.0;
    x = dplr::round_to_dtype(v, gdt);
  }
  if (c.h0) {
    const std::int64_t N = p.num_sequences();
    p.h0 = mk(N * c.H * c.K * c.V, DType::F32, {N, c.H, c.K, c.V});
    for (auto& x : p.h0->values) x = dplr::round_to_dtype(nd(rng), DType::F32);
  }
  return p;
}

inline std::int64_t count_bad(const std::vector<double>& x) {
  std::int64_t n = 0;
  for (double v : x) n += !std::isfinite(v);
  return n;
}

inline std::string describe(const Case& c) {
  std::string s = "B" + std::to_string(c.B) + " T" + std::to_string(c.T) + " H" + std::to_string(c.H) + " K" +
                  std::to_string(c.K) + " V" + std::to_string(c.V) + " " + g::elem_type_name(c.dt);
  if (c.gk_f32) s += " gk:fp32";
  s += std::string(" gk~") + gate_name(c.gate);
  if (c.h0) s += " h0";
  if (c.reverse) s += " rev";
  if (!c.cu.empty()) {
    s += " cu{";
    for (std::size_t i = 0; i < c.cu.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(c.cu[i]);  // (not "," + to_string: g++ 12 warned a false -Wrestrict on it, bug 105329)
    }
    s += "}";
  }
  return s;
}

// The forward problem of `c` with the upstream gradients: do in the inputs' dtype, dht (fp32) when `dht`.
inline dplr::DplrProblem make_backward_problem(const Case& c, bool dht, std::uint64_t seed) {
  dplr::DplrProblem p = make_problem(c, seed);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::normal_distribution<double> nd(0.0, 1.0);
  p.grad_o = p.v;
  for (auto& x : p.grad_o->values) x = dplr::round_to_dtype(nd(rng), p.v.dtype);
  if (dht) {
    const std::int64_t N = p.num_sequences();
    dplr::Tensor t;
    t.dtype = DType::F32;
    t.shape = {N, c.H, c.K, c.V};
    t.values.resize(N * c.H * c.K * c.V);
    for (auto& x : t.values) x = dplr::round_to_dtype(nd(rng), DType::F32);
    p.grad_ht = std::move(t);
  }
  return p;
}

// The planted defect the host emulations (scripts/gpu-emulate, scripts/cuda-emulator) run, by the name in
// DPLR_EMULATE_PLANT (gpu::planted_defect_name; unset or empty: None). Exits 2 naming the defects on any other name.
inline g::PlantedDefect emulated_planted_defect() {
  const char* name = std::getenv("DPLR_EMULATE_PLANT");
  if (!name || !*name) return g::PlantedDefect::None;
  std::string names;
  for (int i = 0;; ++i) {
    const auto d = static_cast<g::PlantedDefect>(i);
    const std::string known = g::planted_defect_name(d);
    if (known == "unknown") break;
    if (known == name) return d;
    names += (names.empty() ? "" : ", ") + known;
  }
  std::fprintf(stderr, "DPLR_EMULATE_PLANT=%s: expected one of %s\n", name, names.c_str());
  std::exit(2);
}

}  // namespace dplr_gpu_test
