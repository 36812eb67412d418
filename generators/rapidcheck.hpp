// RapidCheck generators for DPLR case specs: shapes, varlen splits, h0 present or not, dtype,
// distribution and seed. Sizes grow with RapidCheck's size parameter and shrink toward the smallest
// failing case (B = H = 1, short T, K = V = 1, no varlen, no h0).
#pragma once
#include <rapidcheck.h>

#include <algorithm>
#include <ostream>
#include <string>

#include "generators/distributions.hpp"

namespace dplr {

struct CaseLimits {
  std::int64_t max_B = 2, max_T = 12, max_H = 2, max_K = 5, max_V = 5;
  bool allow_varlen = true;
  bool allow_reverse = true;
  std::vector<DType> dtypes{DType::F64, DType::F32, DType::F16, DType::BF16};
};

// Splits T into 1..4 sequences (some may be empty, as packing allows).
inline rc::Gen<std::vector<std::int64_t>> gen_cu_seqlens(std::int64_t T) {
  return rc::gen::exec([T] {
    const auto cuts = *rc::gen::inRange<std::int64_t>(0, 4);
    std::vector<std::int64_t> cu{0};
    for (std::int64_t c = 0; c < cuts; ++c) cu.push_back(*rc::gen::inRange<std::int64_t>(0, T + 1));
    cu.push_back(T);
    std::sort(cu.begin(), cu.end());
    return cu;
  });
}

inline rc::Gen<CaseSpec> gen_case_spec(CaseLimits limits = {}) {
  return rc::gen::exec([limits] {
    CaseSpec spec;
    const bool varlen = limits.allow_varlen && *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    spec.shape.B = varlen ? 1 : *rc::gen::inRange<std::int64_t>(1, limits.max_B + 1);
    spec.shape.T = *rc::gen::inRange<std::int64_t>(1, limits.max_T + 1);
    spec.shape.H = *rc::gen::inRange<std::int64_t>(1, limits.max_H + 1);
    spec.shape.K = *rc::gen::inRange<std::int64_t>(1, limits.max_K + 1);
    spec.shape.V = *rc::gen::inRange<std::int64_t>(1, limits.max_V + 1);
    if (varlen) spec.cu_seqlens = *gen_cu_seqlens(spec.shape.T);
    spec.dtype = *rc::gen::elementOf(limits.dtypes);
    spec.distribution = *rc::gen::elementOf(distribution_names());
    spec.seed = *rc::gen::arbitrary<std::uint32_t>();
    spec.with_h0 = *rc::gen::arbitrary<bool>();
    spec.reverse = limits.allow_reverse && *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    return spec;
  });
}

// A case of the property sweep (`dplr check --property`, verify/property_sweep.hpp): inputs and the kernel
// they are run through. kernel "cpu" is the CPU properties (the chunk-form oracles at chunk_size against the
// recurrence; the exact reference under permuted heads and sequences).
struct SweepCase {
  CaseSpec spec;
  std::string kernel;  // "chunk", "chunk-fused", "recurrent" (GPU kernels) or "cpu"
  int chunk_size = 0;  // 16, 32, 64; 0 for recurrent
};

// Prints a case in full (RapidCheck's counterexample, and the report's notes).
inline void showValue(const SweepCase& c, std::ostream& os) {
  const auto& s = c.spec.shape;
  os << "kernel " << c.kernel << " C" << c.chunk_size << "; " << c.spec.distribution << " B" << s.B << " T" << s.T
     << " H" << s.H << " K" << s.K << " V" << s.V << "; dtype " << dtype_name(c.spec.dtype) << ", gk "
     << dtype_name(c.spec.gk_dtype) << "; seed " << c.spec.seed << "; cu_seqlens [";
  for (std::size_t i = 0; i < c.spec.cu_seqlens.size(); ++i) os << (i ? "," : "") << c.spec.cu_seqlens[i];
  os << "]; h0 " << (c.spec.with_h0 ? "yes" : "no") << ", do/dht " << (c.spec.with_backward ? "yes" : "no")
     << ", reverse " << (c.spec.reverse ? "yes" : "no") << ", scale " << (c.spec.scale == 0.0 ? "K^-1/2" : "")
     << (c.spec.scale == 0.0 ? std::string() : std::to_string(c.spec.scale));
}

// Varlen packing as lengths: 1..max_sequences sequences, each empty, of length 1, or up to max_length
// (empty and length-1 sequences weighted up: the boundaries kernels get wrong). Shrinks toward one short
// sequence.
inline rc::Gen<std::vector<std::int64_t>> gen_sequence_lengths(int max_sequences, std::int64_t max_length) {
  return rc::gen::exec([=] {
    const int n = *rc::gen::inRange(1, max_sequences + 1);
    std::vector<std::int64_t> cu{0};
    for (int i = 0; i < n; ++i) {
      const auto length = *rc::gen::weightedOneOf<std::int64_t>(
          {{4, rc::gen::inRange<std::int64_t>(1, max_length + 1)}, {1, rc::gen::just<std::int64_t>(0)},
           {1, rc::gen::just<std::int64_t>(1)}});
      cu.push_back(cu.back() + length);
    }
    if (cu.back() == 0) cu.back() = 1;  // a case has at least one token
    return cu;
  });
}

// A head or value size: 64 and 128 weighted up, odd and prime sizes, anything in 1..max.
inline rc::Gen<std::int64_t> gen_head_size(std::int64_t max) {
  std::vector<std::int64_t> odd;
  for (std::int64_t x : {1, 3, 7, 13, 31, 61, 67, 97, 100, 127})
    if (x <= max) odd.push_back(x);
  std::vector<std::int64_t> wide;
  for (std::int64_t x : {64, 128})
    if (x <= max) wide.push_back(x);
  if (wide.empty()) wide.push_back(max);
  return rc::gen::weightedOneOf<std::int64_t>({{3, rc::gen::elementOf(wide)},
                                               {2, rc::gen::elementOf(odd)},
                                               {2, rc::gen::inRange<std::int64_t>(1, max + 1)}});
}

// What the GPU kernels are swept over: B 1..3, T 1..3000 (T = 1, short, long, rarely a multiple of the
// chunk), H 1..4 (every head drawn apart), K and V 1..128, q..b in bf16/fp16/fp32 and gk in fp32 or the
// same, every named distribution, h0 present or not, varlen with empty and length-1 sequences, reverse (the
// recurrent kernels only), the scale; the forward kernels (chunk-fused, chunk, recurrent) take no do/dht, the
// backward ones (chunk-bwd, recurrent-bwd; a quarter of the draws) take both. B x T x H x K x V is kept below
// 2^25 (backward: 2^23) so the exact reference of one case stays within seconds.
inline rc::Gen<SweepCase> gen_gpu_sweep_case() {
  return rc::gen::exec([] {
    SweepCase c;
    c.kernel = *rc::gen::weightedElement<std::string>(
        {{2, "chunk-fused"}, {2, "chunk"}, {2, "recurrent"}, {1, "chunk-bwd"}, {1, "recurrent-bwd"}});
    const bool recurrent = c.kernel == "recurrent" || c.kernel == "recurrent-bwd";
    const bool backward = c.kernel == "chunk-bwd" || c.kernel == "recurrent-bwd";
    c.chunk_size = recurrent ? 0 : *rc::gen::elementOf(std::vector<int>{16, 64, 32});
    CaseSpec& s = c.spec;
    s.shape.H = *rc::gen::inRange<std::int64_t>(1, 5);
    s.shape.K = *gen_head_size(128);
    s.shape.V = *gen_head_size(128);
    const std::int64_t budget = std::int64_t{1} << (backward ? 23 : 25);  // the exact backward costs ~3x
    const bool varlen = *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    if (varlen) {
      s.cu_seqlens = *gen_sequence_lengths(5, std::clamp<std::int64_t>(budget / (s.shape.H * s.shape.K * s.shape.V) / 5, 1, 700));
      s.shape.B = 1;
      s.shape.T = s.cu_seqlens.back();
    } else {
      s.shape.B = *rc::gen::inRange<std::int64_t>(1, 4);
      s.shape.T = *rc::gen::weightedOneOf<std::int64_t>({{1, rc::gen::just<std::int64_t>(1)},
                                                          {4, rc::gen::inRange<std::int64_t>(2, 300)},
                                                          {2, rc::gen::inRange<std::int64_t>(300, 3001)}});
    }
    const std::int64_t per_token = s.shape.B * s.shape.H * s.shape.K * s.shape.V;
    if (!varlen) s.shape.T = std::max<std::int64_t>(1, std::min(s.shape.T, budget / per_token));
    s.dtype = *rc::gen::elementOf(std::vector<DType>{DType::BF16, DType::F16, DType::F32});
    s.gk_dtype = *rc::gen::elementOf(std::vector<DType>{DType::F32, s.dtype});
    s.distribution = *rc::gen::elementOf(distribution_names());
    s.seed = *rc::gen::inRange<std::uint32_t>(0, 1u << 31);
    s.with_h0 = *rc::gen::arbitrary<bool>();
    s.with_backward = backward;
    s.reverse = recurrent && *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    s.scale = *rc::gen::elementOf(std::vector<double>{0.0, 1.0, 0.125});
    return c;
  });
}

// What the CPU properties are swept over: small cases (the exact reference at double-double is slow on few
// cores): B 1..2, T 1..80, H 1..3, K and V 1..6, every dtype, distribution, h0, do/dht, varlen with empty
// and length-1 sequences, reverse, scale, chunk size 16/32/64 for the oracles.
inline rc::Gen<SweepCase> gen_cpu_sweep_case() {
  return rc::gen::exec([] {
    SweepCase c;
    c.kernel = "cpu";
    c.chunk_size = *rc::gen::elementOf(std::vector<int>{16, 32, 64});
    CaseSpec& s = c.spec;
    s.shape.H = *rc::gen::inRange<std::int64_t>(1, 4);
    s.shape.K = *rc::gen::inRange<std::int64_t>(1, 7);
    s.shape.V = *rc::gen::inRange<std::int64_t>(1, 7);
    if (*rc::gen::weightedElement<bool>({{3, false}, {1, true}})) {
      s.cu_seqlens = *gen_sequence_lengths(4, 40);
      s.shape.B = 1;
      s.shape.T = s.cu_seqlens.back();
    } else {
      s.shape.B = *rc::gen::inRange<std::int64_t>(1, 3);
      s.shape.T = *rc::gen::weightedOneOf<std::int64_t>(
          {{1, rc::gen::just<std::int64_t>(1)}, {6, rc::gen::inRange<std::int64_t>(2, 81)}});
    }
    s.dtype = *rc::gen::elementOf(std::vector<DType>{DType::F32, DType::BF16, DType::F16, DType::F64});
    s.gk_dtype = *rc::gen::elementOf(std::vector<DType>{DType::F32, s.dtype});
    s.distribution = *rc::gen::elementOf(distribution_names());
    s.seed = *rc::gen::inRange<std::uint32_t>(0, 1u << 31);
    s.with_h0 = *rc::gen::arbitrary<bool>();
    s.with_backward = *rc::gen::arbitrary<bool>();
    s.reverse = *rc::gen::weightedElement<bool>({{4, false}, {1, true}});
    s.scale = *rc::gen::elementOf(std::vector<double>{0.0, 1.0, 0.125});
    return c;
  });
}

}  // namespace dplr

namespace rc {
template <>
struct Arbitrary<dplr::CaseSpec> {
  static Gen<dplr::CaseSpec> arbitrary() { return dplr::gen_case_spec(); }
};
}  // namespace rc
