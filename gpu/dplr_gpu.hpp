// dplr::gpu — our own CUDA kernels for the DPLR delta rule (shared spec DPLR.md): the forward, the fused recurrent
// backward and the chunk form's backward (each its own section), as a plain C++ API.
// Every function takes device pointers and sizes, checks the request before launching anything (CUTLASS's
// can_implement style: an unsupported request throws dplr::gpu::Unsupported with the reason, nothing runs),
// launches on `stream` and returns without synchronizing. CUDA failures throw dplr::gpu::CudaError.
// This header needs only cuda_runtime_api.h, so g++ code can include it.
//
// Layouts (batch-first, as fla; all row-major, the last index fastest):
//   q, k, a, b, gk [B, T, H, K]; v, o [B, T, H, V]; h0, ht [N, H, K, V] fp32 (N = B, or the number of
//   sequences with cu_seqlens, which needs B == 1 and is int64 [N + 1] on the device: sequence n is tokens
//   cu_seqlens[n] .. cu_seqlens[n + 1] - 1 of the T packed ones; cu_seqlens[0] = 0, cu_seqlens[N] = T, non-
//   decreasing: not checked, it lives on the device).
//   q, k, v, a, b share one dtype (fp32, fp16 or bf16); gk has the same dtype or fp32; o has the input dtype.
//   Accumulation and state are fp32 everywhere; fp32 inputs get plain fp32 arithmetic (no TF32, and no mode asks
//   for it). 16-bit inputs at C = 16 take the tensor-core kernels (chunk_A_WY, chunk_h_o) with every fp32 operand
//   split in two TF32 words ("3xTF32", products to ~2^-21 relative), far below the 16-bit outputs' rounding.
// Stage tensors of the chunk form (C = chunk size, NT = ceil(T / C); every chunk's rows are its tokens;
// the gated operands qg, kg, bg, ag, eg_last of stage A are described at GatedOperands below). With
// cu_seqlens (B = 1) each sequence is chunked from its own start (sequence n has NT_n = ceil(len_n / C) chunks,
// the last one short, an empty sequence none) and the per-chunk tensors h and eg_last are indexed by the global
// chunk g = chunk_offsets[n] + c (fla's layout): [NT, ...] is then [num_chunks(in, C), ...], of which the first
// chunk_offsets[N] rows are used:
//   gi, ge     [B, T, H, K] fp32  inclusive / exclusive cumulative sum of gk inside the chunk     (cumsum)
//   A_qk, A_qb, A_ak, A_ab [B, T, H, C] fp32: row of token r of a chunk, column s = token s of the same
//              chunk (zero above the diagonal, and for s past the end of a short last chunk)      (A)
//   A_ab_inv   [B, T, H, C] fp32  (I - A_ab)^-1, unit lower triangular                             (WY)
//   w          [B, T, H, K] fp32, u [B, T, H, V] fp32                                              (WY)
//   h          [B, NT, H, K, V] fp32: the state before each chunk; v_new [B, T, H, V] fp32         (h)
//   o          [B, T, H, V] input dtype (fp32 with OutputMode::Fp32)                              (o)
// q in the chunk form is already multiplied by scale (so A_qk and A_qb include it).
//
// Decay range: no kernel factors exp(gi_r - gi_s) as exp(gi_r) * exp(-gi_s) over a whole chunk; for gk <= 0
// every decay factor is <= 1, so any gk <= 0 (-30 and far below) is finite. The staged kernels (chunk_A) form
// the in-chunk cumulative sums in fp64, split into two fp32 words, and take each factor as the exponential of a
// difference of two such sums (full fp32 accuracy however large |gi| grows). The tensor-core chunk_A_WY instead
// multiplies per-token decays exp(gk_j) through a reference token m with s <= m <= r (each factor a running product
// of at most 16 of them, <= 1; relative error ~n/2 ulp, measured: every stage tensor within 1.2e-7 of the exact
// stage oracles). Not checked (no device-side input scan yet): gk > 0 (growth) is computed as given and overflows
// to inf/NaN where the summed growth inside one chunk passes ~88 (or the state itself grows past fp32);
// non-finite inputs give non-finite outputs.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace dplr::gpu {

enum class ElemType { F32, F16, BF16 };
const char* elem_type_name(ElemType t);
std::size_t elem_size(ElemType t);

// A request the kernels do not implement (shape, chunk size, dtype, missing pointer). Thrown before launch.
class Unsupported : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};
// A CUDA runtime error (launch failure, out of memory, no device).
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The largest K and V any kernel takes.
inline constexpr int kMaxHeadDim = 128;

// Which kernel runs a chunk stage that more than one kernel implements. The defaults are the fastest measured
// (gpu/NOTES.md); the others are there so that the tests check and the benchmark times every kernel. An explicit
// choice the request cannot take (Factored at C != 16; TensorCores outside 16-bit inputs at C = 16 with V a multiple of 8 and 16-byte
// aligned operands) throws
// Unsupported, and so does a value outside the enum: never a silent fallback to the default.
enum class AVariant {
  Default,   // Factored at C = 16, Direct otherwise
  Factored,  // stage A with 4 x 4 sub-blocks factored through a reference token (C = 16 only)
  Direct,    // stage A with one exponential per (row, column, k)
};
enum class HOVariant {
  Default,      // TensorCores where it applies, else Fma2
  TensorCores,  // chunk_ho_mma_kernel: 3xTF32 mma.sync (16-bit inputs, C = 16, 16-byte aligned operands)
  Fma2,         // chunk_ho_kernel, fp32 FMA, two columns of V a thread
  Fma1,         // chunk_ho_kernel, fp32 FMA, one column of V a thread
};
struct ChunkVariant {
  AVariant a = AVariant::Default;    // chunk_A (staged; also the fused path where chunk_A_WY does not apply)
  HOVariant ho = HOVariant::Default; // chunk_h_o (the fused path)
};
const char* variant_name(AVariant v);   // "default", "factored", "direct"
const char* variant_name(HOVariant v);  // "default", "tensor-cores", "fma2", "fma1"

// How o is written. Rounded (the contract): in the inputs' dtype, rounded once to nearest. Fp32 (the fp32-output
// mode): the fp32 value the kernel would have rounded, so that the 16-bit paths (tensor cores, 3xTF32 splits) are
// judged on their internal accuracy against fp32 bars, which a 16-bit o hides (a 3e-4 internal error moves a bf16
// o's floor ratio only to 1.016). Every stage tensor is fp32 in both modes; with Fp32, o is float* and must be
// 8-byte aligned.
enum class OutputMode { Rounded, Fp32 };
const char* output_mode_name(OutputMode m);  // "rounded", "fp32"

// Planted defects: known bugs of this kernel family, for proving that the property sweep finds bugs (issue 13).
// Compiled in only by -DDPLR_PLANT_DEFECTS=ON (a test build, never the library users link): there
// ForwardInputs::planted picks one per launch. In the normal build every planted branch compiles away and
// check_inputs refuses any value but None.
//   HeadStride      fused recurrent: k read with a token stride of K instead of H K (fla's safe-gate bug: right
//                   at H = 1)
//   SequenceStart   chunk form, cu_seqlens: every sequence after the first starts one token late
//   DropLastChunk   chunk form, the sequential kernels (h, h+o): a short last chunk is skipped
//   MissingBarrier  fused h+o (FMA kernel): the barrier between v_new and its readers is left out
//   Bf16State       fused recurrent: the state rounded to bf16 after every token
//   FactoredDecay   chunk form, stage A: exp(gl - gi) taken as exp(gl) exp(-gi) (overflows for strong decay)
// and the backward's (BackwardInputs::fwd.planted; the forward's also reach the backward's recompute):
//   BwdHeadOffset   chunk backward, WY_bwd (both kernels): A_ab_inv and A_ak read without the head offset, head 0's
//                   for every head (right at H = 1)
//   BwdStateBf16    chunk backward, h_bwd's sequential kernels: the state gradient dS rounded to bf16 every chunk
//   BwdDgkExclusive chunk backward, cumsum_bwd (its kernel and the fused tensor-core A_bwd): dgk's suffix sum of
//                   q dq_o over r > t instead of r >= t
//   RecurrentBwdStateBf16  fused recurrent backward: the state gradient G rounded to bf16 after every token
enum class PlantedDefect {
  None, HeadStride, SequenceStart, DropLastChunk, MissingBarrier, Bf16State, FactoredDecay,
  BwdHeadOffset, BwdStateBf16, BwdDgkExclusive, RecurrentBwdStateBf16
};
const char* planted_defect_name(PlantedDefect d);  // "none", "head-stride", ...
bool planted_defects_built();                      // whether this build has -DDPLR_PLANT_DEFECTS=ON

// The forward inputs. All pointers are device pointers.
struct ForwardInputs {
  std::int64_t B = 1, T = 1, H = 1, K = 64, V = 64;
  ElemType dtype = ElemType::BF16;     // q, k, v, a, b and o
  ElemType gk_dtype = ElemType::BF16;  // dtype, or F32
  const void *q = nullptr, *k = nullptr, *v = nullptr, *a = nullptr, *b = nullptr, *gk = nullptr;
  const float* h0 = nullptr;                 // optional [N, H, K, V]
  const std::int64_t* cu_seqlens = nullptr;  // optional, device, [N + 1]; needs B == 1
  std::int64_t num_sequences = 0;            // N: required with cu_seqlens (host value); else B
  float scale = -1.0f;                       // < 0: K^-1/2
  // The chunk form's stages with cu_seqlens: the first global chunk of every sequence, device int32 [N + 1]
  // (prefix sum of ceil(len_n / C)), filled by prepare_chunk_offsets for chunk size chunk_offsets_C.
  // chunk_forward / chunk_forward_fused fill it themselves (in their workspace); unused without cu_seqlens.
  const std::int32_t* chunk_offsets = nullptr;
  int chunk_offsets_C = 0;
  ChunkVariant variant;  // the chunk stages' kernel choice (check_inputs refuses a value outside the enums)
  OutputMode output = OutputMode::Rounded;  // o's type: the inputs' dtype, or fp32 (check_inputs refuses others)
  PlantedDefect planted = PlantedDefect::None;  // only in a -DDPLR_PLANT_DEFECTS=ON build

  std::int64_t N() const { return cu_seqlens ? num_sequences : B; }
  float resolved_scale() const;
};

// Throws Unsupported unless the inputs are well-formed and within what the kernels take.
void check_inputs(const ForwardInputs& in);

// ---- fused recurrent forward (inference) ----------------------------------------------------------------
// o [B, T, H, V] (input dtype, or fp32 with OutputMode::Fp32), ht [N, H, K, V] fp32 (nullptr: not stored). reverse: last token first.
// T == 1 (decode) is a first-class case.
void fused_recurrent_forward(const ForwardInputs& in, void* o, float* ht, bool reverse, cudaStream_t stream = 0);

// ---- fused recurrent backward (training) ------------------------------------------------------------------
// The gradients of L = sum_t <o_t, do_t> + <ht, dht> (shared spec DPLR.md, "The backward recurrence") through the
// recurrence, as the exact reference computes them (reference/recurrent.hpp), fused: one kernel walks each
// (sequence, head) forward to keep checkpoints, then backward segment by segment. fla has no recurrent backward.
// Options as the forward: h0, cu_seqlens (B == 1), reverse (the backward of the reversed scan), scale, T == 1,
// fp32 / fp16 / bf16 inputs with gk in their dtype or fp32, K and V in [1, 128].
// The state is never divided by a decay: S_{t-1} is recomputed from a checkpoint kept every
// kRecurrentBackwardCheckpointInterval (P) tokens, so any gk <= 0 (-30 and below) gives finite gradients.
// Deterministic: no atomics; every sum runs in a fixed order, so two runs give the same bits.
inline constexpr int kRecurrentBackwardCheckpointInterval = 64;

struct RecurrentBackwardArgs {
  const void* grad_o = nullptr;  // do [B, T, H, V], the inputs' dtype; required
  const float* dht = nullptr;    // optional [N, H, K, V] fp32; zero when absent
  bool reverse = false;          // the forward's flag: tokens were processed last to first
  // Outputs: dq, dk, da, db [B, T, H, K] and dv [B, T, H, V] in the inputs' dtype; dgk [B, T, H, K] fp32; dh0
  // [N, H, K, V] fp32, written when given (the gradient of the initial state, h0 given or not).
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *da = nullptr, *db = nullptr;
  float* dgk = nullptr;
  float* dh0 = nullptr;
  // fused_recurrent_backward_workspace(in).total() floats (float-aligned), contents ignored; its pieces start at
  // multiples of 256 bytes from it.
  float* workspace = nullptr;
};
// The workspace in floats. With Kp = K rounded up to 32, 64 or 128 and Vp = V rounded up to a multiple of 64
// (one block owns 64 columns): checkpoints (floor(B T / P) + N) x H x Kp x Vp (the state every P tokens of every
// sequence; about N H K V ceil(T / P)); segment_states min(N min(P, T), T with cu_seqlens) x H x Kp x Vp (one
// segment's recomputed states per (sequence, head)); partials, for V > 64 only, 5 x ceil(V / 64) x B T H K (each
// V tile's share of dq, dk, db, da, dgk, summed in tile order by a second kernel). B8 T4096 H16 K = V = 64:
// 136 MB + 134 MB; B4 T4096 H8 K = V = 128: 136 + 134 + 671 MB.
struct RecurrentBackwardWorkspaceSizes {
  std::int64_t checkpoints = 0, segment_states = 0, partials = 0;
  std::int64_t total() const { return checkpoints + segment_states + partials + 3 * 64; }  // + alignment slack
};
RecurrentBackwardWorkspaceSizes fused_recurrent_backward_workspace(const ForwardInputs& in);
// Throws Unsupported unless the request is one fused_recurrent_backward takes (inputs, pointers, grid limits).
void check_recurrent_backward(const ForwardInputs& in, const RecurrentBackwardArgs& args);
void fused_recurrent_backward(const ForwardInputs& in, const RecurrentBackwardArgs& args, cudaStream_t stream = 0);

// ---- chunk form, one stage per call -----------------------------------------------------------------------
// Chunk sizes 16, 32, 64. With cu_seqlens every stage needs in.chunk_offsets filled by prepare_chunk_offsets
// for the same chunk size (in.chunk_offsets_C == chunk_size); check_chunk refuses it otherwise.
void check_chunk(const ForwardInputs& in, int chunk_size);
// NT = ceil(T / C); with cu_seqlens the upper bound T / C + N (integer division) of sum_n ceil(len_n / C), so
// that the host never needs the true count (it sits on the device, in chunk_offsets[N]): the per-chunk buffers
// (h, eg_last) are sized by it and the per-chunk grids launch that many blocks, those past the last chunk
// returning at once.
std::int64_t num_chunks(const ForwardInputs& in, int chunk_size);
// Fills chunk_offsets (device int32 [N + 1]): chunk_offsets[0] = 0, chunk_offsets[n + 1] = chunk_offsets[n] +
// ceil(len_n / C). One small kernel on `stream`, no host synchronization. Needs cu_seqlens.
void prepare_chunk_offsets(const ForwardInputs& in, int chunk_size, std::int32_t* chunk_offsets,
                           cudaStream_t stream = 0);

// Stage A also writes the gated operands (fla's chunk_A_fwd does the same), fp32, so that the later stages
// need no cumulative sums and no exponentials:
//   qg = scale q (.) exp(gi),  kg = k (.) exp(gl - gi),  bg = b (.) exp(gl - gi),  ag = a (.) exp(ge)   [B, T, H, K]
//   eg_last = exp(gl)                                                   [B, NT, H, K] (cu_seqlens: [NT bound, H, K])
// with gl = gi of the chunk's last token. Every exponent is <= 0 for gk <= 0.
struct GatedOperands {
  float *qg = nullptr, *kg = nullptr, *bg = nullptr, *ag = nullptr, *eg_last = nullptr;
};

void chunk_cumsum(const ForwardInputs& in, int chunk_size, float* gi, float* ge, cudaStream_t stream = 0);
void chunk_A(const ForwardInputs& in, int chunk_size, float* A_qk, float* A_qb, float* A_ak, float* A_ab,
             const GatedOperands& gated, cudaStream_t stream = 0);
// Reads ag and v.
void chunk_WY(const ForwardInputs& in, int chunk_size, const float* A_ab, const float* A_ak, const float* ag,
              float* A_ab_inv, float* w, float* u, cudaStream_t stream = 0);
// Reads kg, bg, eg_last, w, u, v and h0. h (the state before each chunk; may be nullptr when not wanted) and
// v_new are written; ht (may be nullptr) gets the final state.
void chunk_h(const ForwardInputs& in, int chunk_size, const float* kg, const float* bg, const float* eg_last,
             const float* w, const float* u, float* h, float* v_new, float* ht, cudaStream_t stream = 0);
// Reads qg, v, v_new and h.
void chunk_o(const ForwardInputs& in, int chunk_size, const float* A_qk, const float* A_qb, const float* qg,
             const float* v_new, const float* h, void* o, cudaStream_t stream = 0);

// The intermediates of the staged chunk forward (device buffers the caller owns; sizes from
// chunk_workspace_floats). gi/ge are not needed by the forward (stage A forms the cumulative sums itself, in
// fp64); they are filled only when both pointers are set. chunk_offsets ([N + 1] int32) is needed with
// cu_seqlens only (the drivers fill it).
struct ChunkWorkspace {
  float *A_qk = nullptr, *A_qb = nullptr, *A_ak = nullptr, *A_ab = nullptr, *A_ab_inv = nullptr;
  GatedOperands gated;
  float *w = nullptr, *u = nullptr, *v_new = nullptr, *h = nullptr;
  float *gi = nullptr, *ge = nullptr;  // optional
  std::int32_t* chunk_offsets = nullptr;
};
struct ChunkWorkspaceSizes {  // in floats (chunk_offsets: int32 elements, 4 bytes too; N + 1 with cu_seqlens, else 0)
  std::int64_t A = 0, kdim = 0, eg_last = 0, w = 0, u = 0, v_new = 0, h = 0, gi = 0, chunk_offsets = 0;
  // + 64 floats of alignment slack for each of the 17 pieces
  std::int64_t total() const { return 5 * A + 4 * kdim + eg_last + w + u + v_new + h + 2 * gi + chunk_offsets + 17 * 64; }
};
// Neither of these two needs in.chunk_offsets.
ChunkWorkspaceSizes chunk_workspace_floats(const ForwardInputs& in, int chunk_size);
// Carves a workspace out of one device buffer of at least sizes.total() floats (gi/ge included), every piece
// 256-byte aligned.
ChunkWorkspace carve_chunk_workspace(const ForwardInputs& in, int chunk_size, float* buffer);

// The staged chunk forward: cumsum (when ws.gi/ws.ge are set), A, WY, h, o in order. With cu_seqlens it first
// fills ws.chunk_offsets (prepare_chunk_offsets) and runs the stages on a copy of `in` pointing at it; the
// caller's in.chunk_offsets is not needed.
void chunk_forward(const ForwardInputs& in, int chunk_size, const ChunkWorkspace& ws, void* o, float* ht,
                   cudaStream_t stream = 0);

// The fused chunk forward: A and WY (chunk_A_WY where chunk_A_WY_supported, else chunk_A then chunk_WY), then h
// and o in one kernel (chunk_h_o: the state of each chunk stays in shared memory; neither h nor v_new is written,
// so ws.h and ws.v_new may be nullptr where chunk_fused_ho(in, C) is true; elsewhere it runs the staged h and o
// and needs them). Not bitwise the staged path: chunk_A_WY and the tensor-core h+o kernel (3xTF32) sum in other
// orders, and even the FMA h+o kernel sums o's qg S first; the fused o differs from the staged o in the last bit
// in most runs, at the same accuracy (1.00x the correctly rounded floor for 16-bit o in every tested case, ht
// within 1.5e-7 relative RMSE of the exact one). cu_seqlens as chunk_forward. chunk_fused_ho does not need
// in.chunk_offsets.
bool chunk_fused_ho(const ForwardInputs& in, int chunk_size);
// Stages A and WY fused in one kernel (chunk_A_WY.cu: tensor cores, 3xTF32; 16-bit inputs, chunk size 16, K and
// V even and <= 128, 4-byte aligned inputs, cu_seqlens allowed: chunk_A_WY_supported): writes A_qk, A_qb, the
// gated operands qg, kg, bg, eg_last (not ag) and w, u, as chunk_A then chunk_WY would (to fp32 rounding, not
// bitwise: other summation orders); A_ak, A_ab, ag and A_ab_inv stay in shared memory. The fused chunk forward
// uses it where supported, else chunk_A and chunk_WY. With cu_seqlens, in.chunk_offsets must be prepared.
// `keep` (the chunk backward's recompute): A_ak and A_ab_inv ([B, T, H, C] fp32, 16-byte aligned), which the forward
// keeps in shared memory, are also written, as chunk_A and chunk_WY write them (to fp32 rounding); both or neither.
// Neither (the default): the forward's kernel, unchanged by the option (a template flag).
struct AWYBackwardTensors {
  float* A_ak = nullptr;
  float* A_ab_inv = nullptr;
};
bool chunk_A_WY_supported(const ForwardInputs& in, int chunk_size);
void chunk_A_WY(const ForwardInputs& in, int chunk_size, float* A_qk, float* A_qb, const GatedOperands& gated, float* w,
                float* u, cudaStream_t stream = 0, const AWYBackwardTensors& keep = {});
// The fused h and o stage alone (reads what chunk_h and chunk_o read but v_new and h, writes o and ht; ht may be
// nullptr). Throws Unsupported unless chunk_fused_ho(in, chunk_size).
// `states` (the chunk backward's recompute): h (the state before each chunk, [B, NT, H, K, V]) and v_new
// ([B, T, H, V]) are written, as chunk_h writes them (to fp32 rounding: 3xTF32 products, other summation orders),
// and o's products are skipped: o, A_qk, A_qb and qg are not read and must be nullptr; ht as without it. Both h and
// v_new (8-byte aligned), on the tensor-core kernel only (HOVariant Default or TensorCores, where it applies: 16-bit
// inputs, C = 16, K % 4 == 0, V % 8 == 0, 16-byte aligned v and operands); the forward's launches (no states) run the
// kernel unchanged (a template flag).
struct HOStates {
  float* h = nullptr;
  float* v_new = nullptr;
};
void chunk_h_o(const ForwardInputs& in, int chunk_size, const float* A_qk, const float* A_qb, const float* qg,
               const float* kg, const float* bg, const float* eg_last, const float* w, const float* u, void* o,
               float* ht, cudaStream_t stream = 0, const HOStates& states = {});
void chunk_forward_fused(const ForwardInputs& in, int chunk_size, const ChunkWorkspace& ws, void* o, float* ht,
                         cudaStream_t stream = 0);

// ---- chunk form, backward ---------------------------------------------------------------------------------
// The staged backward of the chunk form (docs/chunk-backward.md), one kernel file per stage with the exact
// oracles' stems (reference/chunk_<stage>_bwd.hpp), in their order:
//   o_bwd -> h_bwd (the one sequential stage) -> WY_bwd -> A_bwd -> cumsum_bwd
// Gradients of L = sum_t <o_t, do_t> + <ht, dht>. Stage tensors are fp32, in the oracles' names and layouts
// (reference/chunk_stages.hpp; NT, h and eg_last indexing as the forward's, cu_seqlens included):
//   dA_qk, dA_qb, dA_ak, dA_ab  [B, T, H, C]  (row of token r of a chunk, zero past the mask and a short chunk)
//   dh                          [B, NT, H, K, V]  dL/dS at the END of each chunk (dht for a sequence's last)
//   dv_new [B, T, H, V], dw [B, T, H, K], dh0 [N, H, K, V]
//   dv [B, T, H, V], dq, dk, da, db [B, T, H, K]   fp32 totals (dq with respect to the unscaled q)
//   dgk [B, T, H, K]
// The forward tensors a stage reads (A_qk, A_qb, A_ak, A_ab_inv, qg, kg, bg, eg_last, w, u, h, v_new) are the
// forward stages' (chunk_A, chunk_WY, chunk_h, or the fused forward's kernels with their backward options);
// chunk_backward recomputes them (chunk_backward_recompute; fla keeps only o and ht between forward and backward). Stages that need decay factors re-form the in-chunk sums of gk in fp64 split hi + lo
// (as chunk_A) and take every factor as the exponential of a difference (<= 1 for gk <= 0), never
// exp(gi_r) * exp(-gi_s), to fp32 accuracy however large the difference (common.cuh, exp2_diff_exact_scale).
// Accumulation is fp32 FMA (no tensor cores). No atomics: every output element is summed by one thread in a
// fixed order, and a gradient made of several stages' shares is added in a fixed stage order, so a run is
// bitwise repeatable. dgk is formed by the direct sums (reference/chunk_cumsum_bwd.hpp,
// GateGradient::Direct), not fla's cancelling identity.
// The chunk backward's kernel choice, one a stage (BackwardInputs::variant), as the forward's ChunkVariant: Default
// takes a stage's tensor-core kernel (3xTF32 mma.sync, fp32-accurate products) where that stage supports the
// request (chunk_<stage>_bwd_tensor_cores_supported) and its fp32-FMA kernel elsewhere; an explicit TensorCores
// the request cannot take is refused, never replaced. `recompute` picks how chunk_backward recomputes the forward
// (A, WY, h): TensorCores through the fused forward's kernels, Fma through the staged chunk_A, chunk_WY, chunk_h.
enum class BwdKernel { Default, TensorCores, Fma };
const char* variant_name(BwdKernel v);  // "default", "tensor-cores", "fma"
struct BackwardVariant {
  BwdKernel recompute = BwdKernel::Default, o = BwdKernel::Default, h = BwdKernel::Default,
            wy = BwdKernel::Default, a = BwdKernel::Default;
};
struct BackwardInputs {
  ForwardInputs fwd;           // the forward's inputs; with cu_seqlens the stages need fwd.chunk_offsets
  const void* d_o = nullptr;   // do [B, T, H, V] in fwd.dtype (required)
  const float* dht = nullptr;  // optional [N, H, K, V]; zero when absent
  BackwardVariant variant;     // the stages' kernels (check_backward refuses a value outside the enum)
};
// check_chunk(in.fwd, C) and the backward's own inputs; throws Unsupported.
void check_backward(const BackwardInputs& in, int chunk_size);
// Whether a stage's tensor-core kernel takes this request (BackwardVariant: Default runs it where this is true).
// recompute: chunk_A_WY (with AWYBackwardTensors) and chunk_h_o's tensor-core kernel (with HOStates), i.e. 16-bit
// inputs at C = 16, K % 4 == 0, V % 8 == 0, K, V <= 128, 4-byte aligned inputs and 16-byte aligned v.
bool chunk_recompute_tensor_cores_supported(const BackwardInputs& in, int chunk_size);
bool chunk_o_bwd_tensor_cores_supported(const BackwardInputs& in, int chunk_size);
bool chunk_h_bwd_tensor_cores_supported(const BackwardInputs& in, int chunk_size);
bool chunk_WY_bwd_tensor_cores_supported(const BackwardInputs& in, int chunk_size);
bool chunk_A_bwd_tensor_cores_supported(const BackwardInputs& in, int chunk_size);

// The shares of the gradients one stage hands a later one (fp32 device buffers; not oracle tensors, since the
// oracles list totals). q is the scaled q in the chunk form; dq_o is with respect to it.
struct GradientShares {
  float* dq_o = nullptr;           // [B, T, H, K]     o_bwd: (do S^T) (.) exp(gi)
  float* dv_new_o = nullptr;       // [B, T, H, V]     o_bwd: A_qb^T do              (nullptr: see chunk_h_bwd)
  float* dh_o = nullptr;           // [B, NT, H, K, V] o_bwd: (q (.) exp(gi))^T do, the chunk's share of dL/dS at
                                   //                  its start                      (nullptr: see chunk_h_bwd)
  float* dk_h = nullptr;           // [B, T, H, K]     h_bwd: (v dS'^T) (.) exp(gl - gi)
  float* db_h = nullptr;           // [B, T, H, K]     h_bwd: (v_new dS'^T) (.) exp(gl - gi)
  float* d_chunk_decay = nullptr;  // [B, NT, H, K]    h_bwd: exp(gl) (.) rowsum(S (.) dS')
  float* da_wy = nullptr;          // [B, T, H, K]     WY_bwd: (A_ab_inv^T dw) (.) exp(ge)
  float* dgk_A = nullptr;          // [B, T, H, K]     A_bwd: stage A's share of dgk
};

// Stage o_bwd (per chunk): reads do, v, gk and A_qk, A_qb, qg, v_new, h; writes dA_qk, dA_qb, dv (its first
// share, A_qk^T do) and the shares dq_o, dv_new_o, dh_o; a share dv_new_o or dh_o that is nullptr is not formed
// (chunk_h_bwd's tensor-core kernels form both themselves).
void chunk_o_bwd(const BackwardInputs& in, int chunk_size, const float* A_qk, const float* A_qb, const float* qg,
                 const float* v_new, const float* h, float* dA_qk, float* dA_qb, float* dv, const GradientShares& shares,
                 cudaStream_t stream = 0);
// The forward tensors o_bwd's shares dh_o = qg^T do and dv_new_o = A_qb^T do are made of, for chunk_h_bwd where
// it forms them itself.
struct OShareOperands {
  const float* qg = nullptr;
  const float* A_qb = nullptr;
};
// Stage h_bwd: a sequential kernel (chunk after chunk from the last, one block per (32 columns of V, head,
// sequence)) for dh, dv_new, dh0 (nullptr: not written) and dv += kg dS', then a per-chunk kernel for dw and
// the shares dk_h, db_h, d_chunk_decay. Reads kg, bg, eg_last, w, h, v_new, v, gk, dht and the shares
// dv_new_o, dh_o. Where both shares are nullptr, the tensor-core kernels (chunk_h_bwd_tensor_cores_supported)
// form them from do and `o` (qg, A_qb), as chunk_o_bwd's tensor-core kernel forms them (bitwise); the FMA
// kernels refuse nullptr shares.
void chunk_h_bwd(const BackwardInputs& in, int chunk_size, const float* kg, const float* bg, const float* eg_last,
                 const float* w, const float* h, const float* v_new, float* dh, float* dv_new, float* dw, float* dv,
                 float* dh0, const GradientShares& shares, cudaStream_t stream = 0, const OShareOperands& o = {});
// Stage WY_bwd (per chunk): reads A_ab_inv, A_ak, w, u, v, gk, dw and dv_new (= du); writes dA_ab, dA_ak, the
// share da_wy, and completes dv (+= A_ak^T A_ab_inv^T du).
void chunk_WY_bwd(const BackwardInputs& in, int chunk_size, const float* A_ab_inv, const float* A_ak, const float* w,
                  const float* u, const float* dw, const float* dv_new, float* dA_ab, float* dA_ak, float* dv,
                  const GradientShares& shares, cudaStream_t stream = 0);
// Stage A_bwd (per chunk): reads q, k, a, b, gk, dA_qk, dA_qb, dA_ak, dA_ab and the shares dq_o, dk_h, db_h,
// da_wy; writes the fp32 totals dq (= scale (dq_o + dq_A)), dk, da, db and the share dgk_A.
void chunk_A_bwd(const BackwardInputs& in, int chunk_size, const float* dA_qk, const float* dA_qb, const float* dA_ak,
                 const float* dA_ab, float* dq, float* dk, float* da, float* db, const GradientShares& shares,
                 cudaStream_t stream = 0);
// Stages A_bwd and cumsum_bwd together (chunk_backward's call): the gradients dq, dk, da, db [B, T, H, K] in the
// inputs' dtype, each rounded once to nearest from the fp32 total chunk_A_bwd writes (bitwise its round_to_dtype), and
// dgk (fp32, bitwise chunk_A_bwd then chunk_cumsum_bwd). Where A_bwd runs its tensor-core kernel (BackwardVariant::a,
// chunk_A_bwd_tensor_cores_supported) one kernel writes them all: neither the fp32 totals nor the share dgk_A is
// written (shares.d_chunk_decay is read) and `totals` is not used. Elsewhere chunk_A_bwd then chunk_cumsum_bwd, and for
// 16-bit inputs the totals go through `totals` (fp32 [B, T, H, K] each; required there) and a rounding pass each
// (fp32 inputs: chunk_A_bwd writes the outputs themselves).
struct ABwdTotals {
  float *dq = nullptr, *dk = nullptr, *da = nullptr, *db = nullptr;
};
void chunk_A_cumsum_bwd(const BackwardInputs& in, int chunk_size, const float* dA_qk, const float* dA_qb,
                        const float* dA_ak, const float* dA_ab, void* dq, void* dk, void* da, void* db, float* dgk,
                        const GradientShares& shares, const ABwdTotals& totals, cudaStream_t stream = 0);
// Stage cumsum_bwd (per chunk): reads q, k, a, b and the shares dq_o, da_wy, dk_h, db_h, d_chunk_decay, dgk_A;
// writes dgk.
void chunk_cumsum_bwd(const BackwardInputs& in, int chunk_size, float* dgk, const GradientShares& shares,
                      cudaStream_t stream = 0);

// Device buffers of the staged backward (the caller owns them; sizes from chunk_backward_workspace_floats).
// `forward` holds the recomputed forward (carve_chunk_workspace's pieces; its gi and ge are not used).
struct BackwardWorkspace {
  ChunkWorkspace forward;
  float *dA_qk = nullptr, *dA_qb = nullptr, *dA_ak = nullptr, *dA_ab = nullptr;
  float *dh = nullptr, *dv_new = nullptr, *dw = nullptr;
  float *dv = nullptr, *dq = nullptr, *dk = nullptr, *da = nullptr, *db = nullptr;  // fp32 totals
  GradientShares shares;
};
// Which pieces a backward workspace holds. Stages: every piece of every stage call (the staged runs: the tests,
// `dplr stages`, the bench's stage lines). Driver: only the pieces chunk_backward reads or writes for this request,
// its kernels chosen as it chooses them (the forward's gi, ge never; A_ab, ag only for the FMA recompute; dv_new_o,
// dh_o only where h_bwd does not form them; the fp32 totals dq .. db only for the FMA A_bwd on 16-bit inputs; dgk_A
// only for the unfused cumsum_bwd); the others stay nullptr. B8 T4096 H16 K = V = 64 bf16 C16: 4656 MiB (Stages),
// 2960 MiB (Driver).
enum class BackwardWorkspaceScope { Stages, Driver };
struct BackwardWorkspaceSizes {  // in floats
  ChunkWorkspaceSizes forward;   // the pieces' sizes (all of them, whatever the scope)
  std::int64_t A = 0, kdim = 0, vdim = 0, state = 0, chunk_kdim = 0;
  std::int64_t floats = 0;  // the scope's pieces, each from a 256-byte boundary (carve_backward_workspace's layout)
  std::int64_t total() const { return floats; }
};
// Neither needs in.fwd.chunk_offsets. Driver refuses what chunk_backward would refuse of the variants (an explicit
// TensorCores the request cannot take).
BackwardWorkspaceSizes chunk_backward_workspace_floats(const BackwardInputs& in, int chunk_size,
                                                       BackwardWorkspaceScope scope = BackwardWorkspaceScope::Stages);
// Carves a workspace out of one device buffer of at least sizes.total() floats (the same scope), every piece
// 256-byte aligned.
BackwardWorkspace carve_backward_workspace(const BackwardInputs& in, int chunk_size, float* buffer,
                                           BackwardWorkspaceScope scope = BackwardWorkspaceScope::Stages);

// The gradients: dq, dk, dv, da, db in fwd.dtype, dgk fp32 [B, T, H, K], dh0 fp32 [N, H, K, V] (nullptr: not
// written).
struct BackwardOutputs {
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *da = nullptr, *db = nullptr;
  float* dgk = nullptr;
  float* dh0 = nullptr;
};
// The staged chunk backward: recomputes the forward (chunk_backward_recompute, into ws.forward), then o_bwd, h_bwd
// (folded into h_bwd's tensor-core kernels where both run on tensor cores: ws.shares.dh_o, dv_new_o are then not
// written), WY_bwd, A_bwd, cumsum_bwd (chunk_A_cumsum_bwd); each gradient's last writer rounds its fp32 total once to
// the outputs' dtype (dv: WY_bwd, so ws.dv keeps only the o_bwd + h_bwd shares; where A_bwd runs on tensor cores its
// kernel stores dq, dk, da, db rounded: ws.dq .. ws.db are not written). With cu_seqlens it first fills
// ws.forward.chunk_offsets, as chunk_forward does; in.fwd.chunk_offsets is not needed.
void chunk_backward(const BackwardInputs& in, int chunk_size, const BackwardWorkspace& ws, const BackwardOutputs& out,
                    cudaStream_t stream = 0);
// chunk_backward's first step alone: the forward tensors the backward stages read (A_qk, A_qb, A_ak, A_ab_inv, qg, kg,
// bg, eg_last, w, u, h, v_new) into fw. variant.recompute: TensorCores = chunk_A_WY (AWYBackwardTensors) and
// chunk_h_o (HOStates), where chunk_recompute_tensor_cores_supported (ag and A_ab are then not written); Fma =
// chunk_A, chunk_WY, chunk_h (every buffer of fw but gi, ge written). With cu_seqlens, in.fwd.chunk_offsets must be
// prepared (chunk_backward does it).
void chunk_backward_recompute(const BackwardInputs& in, int chunk_size, const ChunkWorkspace& fw, cudaStream_t stream = 0);


}  // namespace dplr::gpu
