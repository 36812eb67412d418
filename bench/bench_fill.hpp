// Device-side input fills of the GPU bench (bench/bench_fill.cu): deterministic hashes, so that ~400 MB input sets
// need no host generation or upload. Plain C++ declarations; the kernels live in the .cu.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dplr::bench {

// n bf16 values, uniform in [-1, 1].
void fill_uniform_bf16(void* p, std::int64_t n, unsigned seed);
// rows x K bf16 values, each row of K unit-norm (in fp32, then rounded; fla's tests normalise k and a so).
void fill_unit_rows_bf16(void* p, std::int64_t rows, int K, unsigned seed);
// n bf16 values: dst = -src (b = -a: with a unit-norm, the transition I - a a^T diag is contractive).
void negate_bf16(void* dst, const void* src, std::int64_t n);
// n bf16 values logsigmoid(u), u uniform in [-4, 4] (fla-like decay, in (-4.02, 0)).
void fill_logsigmoid_bf16(void* p, std::int64_t n, unsigned seed);
// n fp32 values, uniform in [-1, 1].
void fill_uniform_f32(float* p, std::int64_t n, unsigned seed);

}  // namespace dplr::bench
