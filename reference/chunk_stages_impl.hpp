// Template body of chunk_stages_as (reference/chunk_stages.hpp): the thin orchestrator that runs the
// stages of one (sequence, head) pair chunk by chunk, forward then backward, and stores every stage's
// tensors. Include only from reference/chunk_instantiate_<type>.cpp.
//
// Per pair, forward over chunks:  cumsum -> A -> WY -> h (needs the previous chunk's state) -> o;
// backward over chunks in reverse: o_bwd -> h_bwd (needs dL/dS at the chunk's end) -> WY_bwd -> A_bwd
// -> cumsum_bwd. Each chunk's forward intermediates are kept for its backward (no recomputation: memory
// O(T (C + K + V) + NT K V) per pair, which is what an oracle for every stage needs anyway).
#pragma once
#include <vector>

#include "reference/chunk_A.hpp"
#include "reference/chunk_A_bwd.hpp"
#include "reference/chunk_WY.hpp"
#include "reference/chunk_WY_bwd.hpp"
#include "reference/chunk_cumsum.hpp"
#include "reference/chunk_cumsum_bwd.hpp"
#include "reference/chunk_h.hpp"
#include "reference/chunk_h_bwd.hpp"
#include "reference/chunk_o.hpp"
#include "reference/chunk_o_bwd.hpp"
#include "reference/chunk_stages.hpp"
#include "core/parallel.hpp"
#include "reference/scalar.hpp"

namespace dplr {
namespace chunk {

// Reads and writes the rows of one (sequence, head) pair's chunk in the [B, T, H, D] and
// [B', NT, H, K, V] layouts of chunk_stages.hpp.
class PairLayout {
 public:
  PairLayout(const DplrProblem& p, const ChunkGrid& grid, std::int64_t sequence, std::int64_t head)
      : p_(p), grid_(grid), n_(sequence), h_(head), span_(p.sequence(sequence)) {}

  std::int64_t chunks() const { return grid_.chunks[n_]; }
  std::int64_t first_token(std::int64_t chunk) const { return span_.begin + chunk * grid_.chunk_size; }
  std::int64_t length(std::int64_t chunk) const {
    return std::min<std::int64_t>(grid_.chunk_size, span_.end - first_token(chunk));
  }

  // Rows [t0, t0 + L) of a [B, T, H, D] tensor as an L x D matrix.
  template <class S>
  Mat<S> load(const Tensor& t, std::int64_t chunk) const {
    const std::int64_t t0 = first_token(chunk), L = length(chunk), D = t.shape.back();
    Mat<S> m(L, D);
    for (std::int64_t r = 0; r < L; ++r)
      for (std::int64_t d = 0; d < D; ++d) m(r, d) = ScalarTraits<S>::from_double(t.values[index(t0 + r, d, D)]);
    return m;
  }
  // An L x cols matrix into rows of a [B, T, H, D] tensor (D >= cols; A matrices use D = C).
  template <class S>
  void store_rows(ExactTensor& out, const Mat<S>& m, std::int64_t chunk) const {
    const std::int64_t t0 = first_token(chunk), D = out.shape.back();
    for (std::int64_t r = 0; r < m.rows(); ++r)
      for (std::int64_t d = 0; d < m.cols(); ++d) put(out, index(t0 + r, d, D), m(r, d));
  }

  // A K x V state: from/to [N, H, K, V] (h0, dht, ht, dh0) or to chunk `chunk` of [B', NT, H, K, V].
  template <class S>
  Mat<S> load_state(const std::optional<Tensor>& t) const {
    const std::int64_t K = p_.shape.K, V = p_.shape.V;
    Mat<S> m = Mat<S>::Zero(K, V);
    if (t)
      for (std::int64_t i = 0; i < K; ++i)
        for (std::int64_t j = 0; j < V; ++j) m(i, j) = ScalarTraits<S>::from_double(t->values[p_.state_index(n_, h_, i, j)]);
    return m;
  }
  template <class S>
  void store_state(ExactTensor& out, const Mat<S>& m) const {
    for (std::int64_t i = 0; i < m.rows(); ++i)
      for (std::int64_t j = 0; j < m.cols(); ++j) put(out, p_.state_index(n_, h_, i, j), m(i, j));
  }
  // A 1 x K row of chunk `chunk` into [B', NT, H, K] (eg_last).
  template <class S>
  void store_chunk_row(ExactTensor& out, const Mat<S>& row, std::int64_t chunk) const {
    const std::int64_t K = p_.shape.K;
    const std::int64_t base = ((grid_.row[n_] * grid_.NT + grid_.first_chunk[n_] + chunk) * p_.shape.H + h_) * K;
    for (std::int64_t d = 0; d < K; ++d) put(out, base + d, row(0, d));
  }
  template <class S>
  void store_chunk_state(ExactTensor& out, const Mat<S>& m, std::int64_t chunk) const {
    const std::int64_t K = p_.shape.K, V = p_.shape.V;
    const std::int64_t base = ((grid_.row[n_] * grid_.NT + grid_.first_chunk[n_] + chunk) * p_.shape.H + h_) * K * V;
    for (std::int64_t i = 0; i < K; ++i)
      for (std::int64_t j = 0; j < V; ++j) put(out, base + i * V + j, m(i, j));
  }

 private:
  std::int64_t index(std::int64_t t, std::int64_t d, std::int64_t D) const {
    return p_.token_index(span_.batch, t, h_, d, D);
  }
  template <class S>
  static void put(ExactTensor& out, std::int64_t flat, const S& x) {
    ScalarTraits<S>::to_parts(x, &out.parts[static_cast<std::size_t>(flat) * out.limbs]);
  }

  const DplrProblem& p_;
  const ChunkGrid& grid_;
  std::int64_t n_, h_;
  SequenceSpan span_;
};

// One chunk's inputs and forward intermediates, kept for its backward.
template <class S>
struct ChunkRecord {
  Mat<S> q, k, v, a, b;  // q multiplied by scale
  CumsumResult<S> cumsum;
  AResult<S> A;
  WYResult<S> wy;
  Mat<S> v_new, state_before;
};

template <class S>
void run_pair(const DplrProblem& p, const PairLayout& layout, const ChunkOptions& options, bool backward,
              ExactTensorMap& out) {
  const S scale = ScalarTraits<S>::from_double(p.scale);
  std::vector<ChunkRecord<S>> records(static_cast<std::size_t>(layout.chunks()));
  Mat<S> state = layout.load_state<S>(p.h0);
  for (std::int64_t c = 0; c < layout.chunks(); ++c) {
    ChunkRecord<S>& rec = records[c];
    rec.q = layout.load<S>(p.q, c) * scale;
    rec.k = layout.load<S>(p.k, c), rec.v = layout.load<S>(p.v, c);
    rec.a = layout.load<S>(p.a, c), rec.b = layout.load<S>(p.b, c);
    rec.cumsum = chunk_cumsum<S>(layout.load<S>(p.gk, c));
    const Mat<S>&gi = rec.cumsum.gi, &ge = rec.cumsum.ge;
    rec.A = chunk_A<S>(rec.q, rec.k, rec.a, rec.b, gi, options.decay);
    rec.wy = chunk_WY<S>(rec.A.ab, rec.A.ak, rec.a, ge, rec.v);
    rec.state_before = state;
    HStep<S> step = chunk_h<S>(rec.k, rec.b, rec.v, gi, rec.wy.w, rec.wy.u, state);
    rec.v_new = std::move(step.v_new);
    const Mat<S> o = chunk_o<S>(rec.q, gi, rec.v, rec.v_new, rec.A.qk, rec.A.qb, state);
    state = std::move(step.state_after);

    layout.store_rows(out.at("gi"), gi, c), layout.store_rows(out.at("ge"), ge, c);
    {  // stage A's gated operands, what the kernels hand the later stages instead of cumulative sums:
       // qg = scale q exp(gi), kg = k exp(gl - gi), bg = b exp(gl - gi), ag = a exp(ge), eg_last = exp(gl)
      const Mat<S> to_end = decay_to_chunk_end<S>(gi);
      layout.store_rows(out.at("qg"), Mat<S>(rec.q.cwiseProduct(exp_of<S>(gi))), c);
      layout.store_rows(out.at("kg"), Mat<S>(rec.k.cwiseProduct(to_end)), c);
      layout.store_rows(out.at("bg"), Mat<S>(rec.b.cwiseProduct(to_end)), c);
      layout.store_rows(out.at("ag"), Mat<S>(rec.a.cwiseProduct(exp_of<S>(ge))), c);
      layout.store_chunk_row(out.at("eg_last"), Mat<S>(exp_of<S>(Mat<S>(gi.row(gi.rows() - 1)))), c);
    }
    layout.store_rows(out.at("A_qk"), rec.A.qk, c), layout.store_rows(out.at("A_qb"), rec.A.qb, c);
    layout.store_rows(out.at("A_ak"), rec.A.ak, c), layout.store_rows(out.at("A_ab"), rec.A.ab, c);
    layout.store_rows(out.at("A_ab_inv"), rec.wy.A_ab_inv, c);
    layout.store_rows(out.at("w"), rec.wy.w, c), layout.store_rows(out.at("u"), rec.wy.u, c);
    layout.store_chunk_state(out.at("h"), rec.state_before, c);
    layout.store_rows(out.at("v_new"), rec.v_new, c);
    layout.store_rows(out.at("o"), o, c);
  }
  layout.store_state(out.at("ht"), state);
  if (!backward) return;

  Mat<S> d_state = layout.load_state<S>(p.grad_ht);  // dL/dS at the end of the chunk being processed
  for (std::int64_t c = layout.chunks() - 1; c >= 0; --c) {
    const ChunkRecord<S>& rec = records[c];
    const Mat<S>&gi = rec.cumsum.gi, &ge = rec.cumsum.ge;
    const OGrads<S> og = chunk_o_bwd<S>(layout.load<S>(*p.grad_o, c), rec.q, gi, rec.v, rec.v_new, rec.A.qk, rec.A.qb,
                                        rec.state_before);
    layout.store_chunk_state(out.at("dh"), d_state, c);
    const HGrads<S> hg = chunk_h_bwd<S>(rec.k, rec.b, rec.v, gi, rec.wy.w, rec.v_new, rec.state_before, d_state, og.dv_new);
    const WYGrads<S> wg = chunk_WY_bwd<S>(rec.wy.A_ab_inv, rec.A.ak, rec.wy.w, rec.wy.u, rec.v, ge, hg.dw, hg.dv_new);
    const AGrads<S> ag =
        chunk_A_bwd<S>(og.dA_qk, og.dA_qb, wg.dA_ak, wg.dA_ab, rec.q, rec.k, rec.a, rec.b, gi, options.decay);
    const Mat<S> dq = og.dq + ag.dq, dk = hg.dk + ag.dk, da = wg.da + ag.da, db = hg.db + ag.db;
    const Mat<S> dv = og.dv + hg.dv + wg.dv;
    const Mat<S> dgk = chunk_cumsum_bwd<S>({rec.q, rec.k, rec.a, rec.b, og.dq, ag.dq, wg.da, ag.da, hg.dk, ag.dk, hg.db,
                                            ag.db, ag.dgk, hg.d_chunk_decay},
                                           options.gate_gradient);
    d_state = hg.d_state_before + og.d_state_before;

    layout.store_rows(out.at("dA_qk"), og.dA_qk, c), layout.store_rows(out.at("dA_qb"), og.dA_qb, c);
    layout.store_rows(out.at("dv_new"), hg.dv_new, c), layout.store_rows(out.at("dw"), hg.dw, c);
    layout.store_rows(out.at("dA_ab"), wg.dA_ab, c), layout.store_rows(out.at("dA_ak"), wg.dA_ak, c);
    layout.store_rows(out.at("dq"), Mat<S>(dq * scale), c);  // dL/dq = scale dL/d(scaled q)
    layout.store_rows(out.at("dk"), dk, c), layout.store_rows(out.at("dv"), dv, c);
    layout.store_rows(out.at("da"), da, c), layout.store_rows(out.at("db"), db, c);
    layout.store_rows(out.at("dgk"), dgk, c);
  }
  layout.store_state(out.at("dh0"), d_state);
}

}  // namespace chunk

template <class S>
ExactTensorMap chunk_stages_as(const DplrProblem& p, const ChunkGrid& grid, const ChunkOptions& options) {
  const int limbs = ScalarTraits<S>::limbs();
  const auto& s = p.shape;
  const std::int64_t N = p.num_sequences(), C = grid.chunk_size;
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V}, square{s.B, s.T, s.H, C},
      chunk_state{grid.rows, grid.NT, s.H, s.K, s.V}, state{N, s.H, s.K, s.V};
  const bool backward = options.backward && p.grad_o.has_value();

  ExactTensorMap out;
  for (const char* name : {"gi", "ge", "w", "qg", "kg", "bg", "ag"}) out[name] = ExactTensor(key, limbs);
  out["eg_last"] = ExactTensor({grid.rows, grid.NT, s.H, s.K}, limbs);
  for (const char* name : {"u", "v_new", "o"}) out[name] = ExactTensor(value, limbs);
  for (const char* name : {"A_qk", "A_qb", "A_ak", "A_ab", "A_ab_inv"}) out[name] = ExactTensor(square, limbs);
  out["h"] = ExactTensor(chunk_state, limbs);
  out["ht"] = ExactTensor(state, limbs);
  if (backward) {
    for (const char* name : {"dw", "dq", "dk", "da", "db", "dgk"}) out[name] = ExactTensor(key, limbs);
    for (const char* name : {"dv_new", "dv"}) out[name] = ExactTensor(value, limbs);
    for (const char* name : {"dA_qk", "dA_qb", "dA_ak", "dA_ab"}) out[name] = ExactTensor(square, limbs);
    out["dh"] = ExactTensor(chunk_state, limbs);
    out["dh0"] = ExactTensor(state, limbs);
  }
  parallel_for(N * s.H, options.threads, [&](std::int64_t pair) {
    const chunk::PairLayout layout(p, grid, pair / s.H, pair % s.H);
    chunk::run_pair<S>(p, layout, options, backward, out);
  });
  return out;
}

}  // namespace dplr
