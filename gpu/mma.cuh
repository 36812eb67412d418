// Tensor-core helpers shared by the kernels that run fp32 products on mma.sync m16n8k8 TF32 with a split
// operand ("3xTF32": x = hi + lo, hi*hi + hi*lo + lo*hi, the lo*lo term below 2^-22 of the product dropped), so
// that the products keep fp32 accuracy. Fragment layout of m16n8k8 (g = lane / 4, t = lane % 4):
//   A (16 x 8, row): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)
//   B (8 x 8, col):  b0 (k = t, n = g), b1 (k = t + 4, n = g)
//   C (16 x 8):      c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1)
#pragma once
#include <cuda_runtime.h>

#include "gpu/common.cuh"

namespace dplr::gpu::detail {

// Round to TF32 (nearest, ties away; low 13 bits zero) as a bit pattern; x - hi is exact in fp32 and is passed
// as it is: the tensor core reads the top 19 bits of a .tf32 operand (lo truncated: |lo| <= 2^-11 |x|, so the
// error is below 2^-21 |x|; 3 instructions a split instead of 5).
__device__ __forceinline__ unsigned tf32_bits(float x) { return (__float_as_uint(x) + 0x1000u) & 0xffffe000u; }
__device__ __forceinline__ void split_tf32(float x, unsigned& hi, unsigned& lo) {
  hi = tf32_bits(x);
  lo = __float_as_uint(x - __uint_as_float(hi));
}
// d += a b (m16n8k8, TF32 operands, fp32 accumulation).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// An A fragment (rows r0 .. r0 + 15, columns k0 .. k0 + 7 of a row-major fp32 matrix with leading dimension ld),
// split into hi and lo.
__device__ __forceinline__ void load_a_split(const float* m, int ld, int k0, int g, int t, unsigned (&hi)[4],
                                             unsigned (&lo)[4]) {
  split_tf32(m[g * ld + k0 + t], hi[0], lo[0]);
  split_tf32(m[(g + 8) * ld + k0 + t], hi[1], lo[1]);
  split_tf32(m[g * ld + k0 + t + 4], hi[2], lo[2]);
  split_tf32(m[(g + 8) * ld + k0 + t + 4], hi[3], lo[3]);
}
// A B fragment of a matrix stored k-major (element (k, n) at m[k * ld + n]), columns n0 .. n0 + 7, split.
__device__ __forceinline__ void load_b_split(const float* m, int ld, int k0, int n0, int g, int t, unsigned& hi0,
                                             unsigned& lo0, unsigned& hi1, unsigned& lo1) {
  split_tf32(m[(k0 + t) * ld + n0 + g], hi0, lo0);
  split_tf32(m[(k0 + t + 4) * ld + n0 + g], hi1, lo1);
}

// An A fragment of the transpose of a k-major matrix (element (k, m) at m[k * ld + m]): rows m0 .. m0 + 15 of
// A = M^T, columns k0 .. k0 + 7, split.
__device__ __forceinline__ void load_at_split(const float* m, int ld, int k0, int m0, int g, int t, unsigned (&hi)[4],
                                              unsigned (&lo)[4]) {
  split_tf32(m[(k0 + t) * ld + m0 + g], hi[0], lo[0]);
  split_tf32(m[(k0 + t) * ld + m0 + g + 8], hi[1], lo[1]);
  split_tf32(m[(k0 + t + 4) * ld + m0 + g], hi[2], lo[2]);
  split_tf32(m[(k0 + t + 4) * ld + m0 + g + 8], hi[3], lo[3]);
}
// A B fragment of a matrix stored n-major (element (k, n) at m[n * ld + k]), columns n0 .. n0 + 7, split.
__device__ __forceinline__ void load_bt_split(const float* m, int ld, int k0, int n0, int g, int t, unsigned& hi0,
                                              unsigned& lo0, unsigned& hi1, unsigned& lo1) {
  split_tf32(m[(n0 + g) * ld + k0 + t], hi0, lo0);
  split_tf32(m[(n0 + g) * ld + k0 + t + 4], hi1, lo1);
}
// A B fragment of a k-major matrix of 16-bit values (exact in TF32: no split), as fp32 bits.
template <typename T>
__device__ __forceinline__ void load_b_exact(const T* m, int ld, int k0, int n0, int g, int t, unsigned& b0,
                                             unsigned& b1) {
  b0 = __float_as_uint(to_f(m[(k0 + t) * ld + n0 + g]));
  b1 = __float_as_uint(to_f(m[(k0 + t + 4) * ld + n0 + g]));
}

// An A fragment of a row-major matrix of 16-bit values (rows 0 .. 15, columns k0 .. k0 + 7), exact, as fp32 bits.
template <typename T>
__device__ __forceinline__ void load_a_exact(const T* m, int ld, int k0, int g, int t, unsigned (&a)[4]) {
  a[0] = __float_as_uint(to_f(m[g * ld + k0 + t]));
  a[1] = __float_as_uint(to_f(m[(g + 8) * ld + k0 + t]));
  a[2] = __float_as_uint(to_f(m[g * ld + k0 + t + 4]));
  a[3] = __float_as_uint(to_f(m[(g + 8) * ld + k0 + t + 4]));
}
// A B fragment of an n-major matrix of 16-bit values (element (k, n) at m[n * ld + k]), exact, as fp32 bits.
template <typename T>
__device__ __forceinline__ void load_bt_exact(const T* m, int ld, int k0, int n0, int g, int t, unsigned& b0,
                                              unsigned& b1) {
  b0 = __float_as_uint(to_f(m[(n0 + g) * ld + k0 + t]));
  b1 = __float_as_uint(to_f(m[(n0 + g) * ld + k0 + t + 4]));
}

// Element i of a matrix held as N parts (`stride` floats apart, N = 1, 2 or 4), added in a fixed order:
// (p0 + p1) + (p2 + p3). The sequential kernels' K-split products keep each part in its own buffer.
template <int N>
__device__ __forceinline__ float sum_of_parts(const float* m, int stride, int i) {
  static_assert(N == 1 || N == 2 || N == 4, "one, two or four parts");
  if constexpr (N == 1) return m[i];
  else if constexpr (N == 2) return m[i] + m[stride + i];
  else return (m[i] + m[stride + i]) + (m[2 * stride + i] + m[3 * stride + i]);
}
// A B fragment (k-major, columns n0 .. n0 + 7) of a matrix held as N parts (sum_of_parts), split.
template <int N>
__device__ __forceinline__ void load_b_split_parts(const float* m, int stride, int ld, int k0, int n0, int g, int t,
                                                   unsigned& hi0, unsigned& lo0, unsigned& hi1, unsigned& lo1) {
  if constexpr (N == 1) {
    load_b_split(m, ld, k0, n0, g, t, hi0, lo0, hi1, lo1);
  } else {
    split_tf32(sum_of_parts<N>(m, stride, (k0 + t) * ld + n0 + g), hi0, lo0);
    split_tf32(sum_of_parts<N>(m, stride, (k0 + t + 4) * ld + n0 + g), hi1, lo1);
  }
}

// The 3xTF32 product of split fragments, each term into its own accumulator (they may be the same array):
// hl += a_hi b_lo, lh += a_lo b_hi, hh += a_hi b_hi (in this order; lo*lo dropped). Separate accumulators keep
// the dependent MMA chains short; the caller adds them, (hh + ...) + (hl + lh), once at the end.
__device__ __forceinline__ void mma_3xtf32(float (&hh)[4], float (&hl)[4], float (&lh)[4], const unsigned (&ah)[4],
                                           const unsigned (&al)[4], unsigned bh0, unsigned bl0, unsigned bh1,
                                           unsigned bl1) {
  mma_tf32(hl, ah, bl0, bl1);
  mma_tf32(lh, al, bh0, bh1);
  mma_tf32(hh, ah, bh0, bh1);
}
// The same product with an exact B (16-bit values, no lo part): lh += a_lo b, hh += a_hi b.
__device__ __forceinline__ void mma_2xtf32(float (&hh)[4], float (&lh)[4], const unsigned (&ah)[4],
                                           const unsigned (&al)[4], unsigned b0, unsigned b1) {
  mma_tf32(lh, al, b0, b1);
  mma_tf32(hh, ah, b0, b1);
}
// The same product with an exact A (16-bit values, no lo part): hl += a b_lo, hh += a b_hi.
__device__ __forceinline__ void mma_2xtf32_exact_a(float (&hh)[4], float (&hl)[4], const unsigned (&a)[4],
                                                   unsigned bh0, unsigned bl0, unsigned bh1, unsigned bl1) {
  mma_tf32(hl, a, bl0, bl1);
  mma_tf32(hh, a, bh0, bh1);
}

}  // namespace dplr::gpu::detail
