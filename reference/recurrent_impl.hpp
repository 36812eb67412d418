// Template bodies of reference/recurrent.hpp. Include only from reference/instantiate_<type>.cpp.
//
// Inner loops update in place (`acc += a * b`, `x *= c`): for mp_real each is one MPFR call with no
// temporary, which is what keeps the multiprecision path within a small factor of its op count.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/parallel.hpp"
#include "reference/recurrent.hpp"
#include "reference/scalar.hpp"

namespace dplr {
namespace recurrent_detail {

// MPFR and Arb scalars keep their limbs on the heap.
template <class S>
inline constexpr bool kHeapScalar = !std::is_trivially_copyable_v<S>;

// Reads problem inputs into S, exactly, optionally moved along a direction.
template <class S>
class InputReader {
 public:
  InputReader(const DplrProblem& p, const InputDirection* direction, const S* epsilon)
      : problem_(p), direction_(direction), epsilon_(epsilon) {}

  // dst[i] = t[offset + i] (+ epsilon * d[offset + i]) for i < count.
  void read(std::string_view name, const Tensor& t, std::int64_t offset, std::int64_t count, std::vector<S>& dst) const {
    const std::vector<double>* d = nullptr;
    if (direction_) {
      auto it = direction_->by_name.find(std::string(name));
      if (it != direction_->by_name.end()) d = &it->second;
    }
    for (std::int64_t i = 0; i < count; ++i) {
      if (d) {
        dst[i] = (*d)[offset + i];
        dst[i] *= *epsilon_;
        dst[i] += t.values[offset + i];
      } else {
        dst[i] = t.values[offset + i];
      }
    }
  }
  const DplrProblem& problem() const { return problem_; }

 private:
  const DplrProblem& problem_;
  const InputDirection* direction_;
  const S* epsilon_;
};

// Writes S values into expansion storage (and, for enclosures, their radii).
template <class S>
void store(ExactTensor& out, std::int64_t offset, const std::vector<S>& values, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    double* parts = &out.parts[static_cast<std::size_t>(offset + i) * out.limbs];
    ScalarTraits<S>::to_parts(values[i], parts);
    if constexpr (Enclosure<S>) out.radius[offset + i] = ScalarTraits<S>::radius_upper(values[i], parts);
  }
}

// Row reductions (sums over j of a row of the state) are kept in kLanes partial sums, one per j mod kLanes,
// added at the row's end: the partial sums are independent, so the compiler vectorises the loop over j
// (measured: td_real's backward passes ran scalar, one chain per row, at about 3x the CPU time of a
// vectorised pass). The order of the additions is fixed, so results stay deterministic.
inline constexpr int kLanes = 4;
#define DPLR_INLINE __attribute__((always_inline))

template <class S>
struct LaneSums {
  std::array<S, kLanes> lane;
  LaneSums() {
    for (auto& s : lane) s = 0.0;
  }
  // out = (lane 0 + lane 1) + (lane 2 + lane 3).
  void total(S& out) {
    lane[0] += lane[1];
    lane[2] += lane[3];
    lane[0] += lane[2];
    out = lane[0];
  }
};

// body(j, j % kLanes) for j < n, in blocks of kLanes (the last block may be short).
// Loop bodies are forced inline (DPLR_INLINE): called, the td_real loops were not vectorised at all.
template <class Body>
DPLR_INLINE inline void over_lanes(std::int64_t n, Body&& body) {
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) body(j + l, l);
  for (int l = 0; j < n; ++j, ++l) body(j, l);
}

// One (sequence, head) pair: its token order, per-token inputs, and the state.
template <class S>
class PairRecurrence {
 public:
  PairRecurrence(const InputReader<S>& reader, std::int64_t sequence, std::int64_t head)
      : in_(reader), p_(reader.problem()), n_(sequence), h_(head), span_(p_.sequence(sequence)),
        K_(p_.shape.K), V_(p_.shape.V),
        q_(K_), k_(K_), a_(K_), b_(K_), decay_(K_), v_(V_), x_(V_), out_v_(V_) {
    scale_ = p_.scale;
  }

  std::int64_t steps() const { return span_.length(); }
  std::int64_t token(std::int64_t step) const { return p_.reverse ? span_.end - 1 - step : span_.begin + step; }
  std::int64_t key_offset(std::int64_t step) const { return p_.token_index(span_.batch, token(step), h_, 0, K_); }
  std::int64_t value_offset(std::int64_t step) const { return p_.token_index(span_.batch, token(step), h_, 0, V_); }
  std::int64_t state_offset() const { return p_.state_index(n_, h_, 0, 0); }

  void initial_state(std::vector<S>& state) const {
    state.assign(K_ * V_, S(0.0));
    if (p_.h0) in_.read("h0", *p_.h0, state_offset(), K_ * V_, state);
  }

  // Loads q, k, a, b, v of a step and, unless given (exp dominates the cost at extended precision, so
  // the backward reuses what the forward evaluated), decay = exp(gk).
  void load(std::int64_t step, const S* known_decay = nullptr) {
    using std::exp;
    const std::int64_t ko = key_offset(step), vo = value_offset(step);
    in_.read("q", p_.q, ko, K_, q_);
    in_.read("k", p_.k, ko, K_, k_);
    in_.read("a", p_.a, ko, K_, a_);
    in_.read("b", p_.b, ko, K_, b_);
    if (known_decay) {
      for (std::int64_t i = 0; i < K_; ++i) decay_[i] = known_decay[i];
    } else {
      in_.read("gk", p_.gk, ko, K_, decay_);
      for (auto& d : decay_) d = exp(d);
    }
    in_.read("v", p_.v, vo, V_, v_);
  }

  // x = S^T a (before the decay) into x_, unless `known_x` gives it; then S <- D S + b x^T + k v^T. Needs
  // load(step) first. With kOutput, the same pass also gives o = scale S^T q (of the new S) into out_v_ and,
  // with grad_o, dq = scale S do into *dq.
  template <bool kOutput>
  void advance(std::vector<S>& state, const S* known_x, const std::vector<S>* grad_o = nullptr,
               std::vector<S>* dq = nullptr) {
    if (known_x) {
      for (std::int64_t j = 0; j < V_; ++j) x_[j] = known_x[j];
    } else {
      for (auto& x : x_) x = 0.0;
      for (std::int64_t i = 0; i < K_; ++i) column_sum(x_.data(), &state[i * V_], a_[i], V_);
    }
    if constexpr (kOutput)
      for (auto& o : out_v_) o = 0.0;
    for (std::int64_t i = 0; i < K_; ++i) {
      S* row = &state[i * V_];
      update_row<kOutput>(row, x_.data(), v_.data(), out_v_.data(), decay_[i], b_[i], k_[i], q_[i], V_);
      if (kOutput && grad_o) {
        LaneSums<S> dq_sums;
        row_sum(dq_sums, row, grad_o->data(), V_);
        dq_sums.total((*dq)[i]);
        (*dq)[i] *= scale_;
      }
    }
    if constexpr (kOutput)
      for (auto& e : out_v_) e *= scale_;
  }

  // The row loops on restrict pointers: with the aliasing left to a run-time check, td_real's forward ran
  // the scalar fallback (perf: no packed instruction in its hot loop).
  // sum[j] += row[j] * c.
  DPLR_INLINE static void column_sum(S* __restrict sum, const S* __restrict row, const S& __restrict c, std::int64_t n) {
    for (std::int64_t j = 0; j < n; ++j) sum[j] += row[j] * c;
  }
  // row = d row + b x + k v; with kOutput, o += row q.
  template <bool kOutput>
  DPLR_INLINE static void update_row(S* __restrict row, const S* __restrict x, const S* __restrict v, S* __restrict o,
                                     const S& __restrict d, const S& __restrict b, const S& __restrict k,
                                     const S& __restrict q, std::int64_t n) {
    for (std::int64_t j = 0; j < n; ++j) {
      S& s = row[j];
      s *= d;
      s += b * x[j];
      s += k * v[j];
      if constexpr (kOutput) o[j] += s * q;
    }
  }
  // sums.lane[j % kLanes] += row[j] * w[j].
  DPLR_INLINE static void row_sum(LaneSums<S>& __restrict sums, const S* __restrict row, const S* __restrict w, std::int64_t n) {
    over_lanes(n, [&](std::int64_t j, int l) DPLR_INLINE { sums.lane[l] += row[j] * w[j]; });
  }

  const InputReader<S>& in_;
  const DplrProblem& p_;
  std::int64_t n_, h_;
  SequenceSpan span_;
  std::int64_t K_, V_;
  S scale_;
  std::vector<S> q_, k_, a_, b_, decay_, v_, x_, out_v_;
};

struct Outputs {
  ExactTensor o, ht, dq, dk, dv, da, db, dgk, dh0;
};

// A worker's checkpoints, kept from one pair to the next: allocated anew for each pair, the states (every
// state where they fit) cost as much system time in page faults as a third of the arithmetic's user time (td,
// bench case, one thread).
template <class S>
struct Checkpoints {
  std::vector<std::vector<S>> states;
  std::size_t used = 0;
  void keep(const std::vector<S>& state) {
    if (used == states.size()) states.emplace_back();
    states[used++] = state;  // reuses the element's storage
  }
};

template <class S>
S run_pair(const InputReader<S>& reader, std::int64_t n, std::int64_t h, const RecurrentOptions& options,
           bool want_loss, Outputs& out, Checkpoints<S>& kept) {
  const DplrProblem& p = reader.problem();
  PairRecurrence<S> pair(reader, n, h);
  const std::int64_t K = p.shape.K, V = p.shape.V, L = pair.steps();
  const bool backward = options.backward && p.grad_o.has_value();
  const std::int64_t interval = resolve_checkpoint_interval(options.checkpoint_interval, L, K * V,
                                                           state_scalar_bytes(ScalarTraits<S>::limbs(), kHeapScalar<S>));

  // The forward. For the backward it keeps the state before every interval-th step, and every step's
  // x = S^T a and decay (O(L (K + V)) scalars), and gives dq = scale S_t do_t, which needs only the state.
  std::vector<S> state;
  pair.initial_state(state);
  kept.used = 0;
  std::vector<std::vector<S>>& checkpoints = kept.states;
  std::vector<S> xs(backward ? L * V : 0), decays(backward ? L * K : 0);
  std::vector<S> grad_o(V), grad_ht, dq(K);
  S loss = 0.0;
  const bool read_do = want_loss || backward;

  for (std::int64_t step = 0; step < L; ++step) {
    if (backward && step % interval == 0) kept.keep(state);
    pair.load(step);
    if (read_do) reader.read("do", *p.grad_o, pair.value_offset(step), V, grad_o);
    pair.template advance<true>(state, nullptr, backward ? &grad_o : nullptr, &dq);
    const auto& o = pair.out_v_;
    store(out.o, pair.value_offset(step), o, V);
    if (backward) {
      store(out.dq, pair.key_offset(step), dq, K);
      std::copy(pair.x_.begin(), pair.x_.end(), xs.begin() + step * V);
      std::copy(pair.decay_.begin(), pair.decay_.end(), decays.begin() + step * K);
    }
    token_progress().done.fetch_add(1, std::memory_order_relaxed);
    if (want_loss)
      for (std::int64_t j = 0; j < V; ++j) loss += o[j] * grad_o[j];
  }
  store(out.ht, pair.state_offset(), state, K * V);
  if (want_loss && p.grad_ht) {
    grad_ht.resize(K * V);
    reader.read("dht", *p.grad_ht, pair.state_offset(), K * V, grad_ht);
    for (std::int64_t i = 0; i < K * V; ++i) loss += state[i] * grad_ht[i];
  }
  if (!backward) return loss;

  // G = dL/dS, walked back segment by segment. Step t needs the state before it, S_{t-1}: the segment's
  // checkpoint for its first step, else recomputed from it (interval 1: every state is a checkpoint).
  std::vector<S> G(K * V, S(0.0));
  if (p.grad_ht) reader.read("dht", *p.grad_ht, pair.state_offset(), K * V, G);
  const std::int64_t segment = std::min(interval, std::max<std::int64_t>(L, 1));  // no segment is longer than L
  std::vector<std::vector<S>> segment_states(segment - 1, std::vector<S>(K * V));  // before steps first+1 .. last-1
  std::vector<S> scaled_q(K), y(V), dv(V), dk(K), da(K), db(K), dgk(K);
  for (std::int64_t c = static_cast<std::int64_t>(kept.used) - 1; c >= 0; --c) {
    const std::int64_t first = c * interval, last = std::min(L, first + interval);
    auto state_before = [&](std::int64_t step) -> std::vector<S>& {
      return step == first ? checkpoints[c] : segment_states[step - first - 1];
    };
    for (std::int64_t step = first; step + 1 < last; ++step) {
      std::vector<S>& next = state_before(step + 1);
      next = state_before(step);
      pair.load(step, &decays[step * K]);
      pair.template advance<false>(next, &xs[step * V]);
    }
    for (std::int64_t step = last - 1; step >= first; --step) {
      const std::vector<S>& prev = state_before(step);
      const S* x = &xs[step * V];
      pair.load(step, &decays[step * K]);
      reader.read("do", *p.grad_o, pair.value_offset(step), V, grad_o);
      for (std::int64_t i = 0; i < K; ++i) {
        scaled_q[i] = pair.q_[i];
        scaled_q[i] *= pair.scale_;
      }
      for (auto* col : {&y, &dv}) for (auto& e : *col) e = 0.0;
      // Pass 1: G += scale q do^T; row reductions dk = G v, dgk = D rowsum(G .* S_prev), db = G x; column
      // sums y = G^T b, dv = G^T k.
      for (std::int64_t i = 0; i < K; ++i) {
        LaneSums<S> dk_sums, dgk_sums, db_sums;  // locals: the compiler keeps them in registers
        S* g_row = &G[i * V];
        const S* prev_row = &prev[i * V];
        over_lanes(V, [&](std::int64_t j, int l) DPLR_INLINE {
          S& g = g_row[j];
          g += scaled_q[i] * grad_o[j];
          dk_sums.lane[l] += g * pair.v_[j];
          dgk_sums.lane[l] += g * prev_row[j];
          db_sums.lane[l] += g * x[j];
          y[j] += g * pair.b_[i];
          dv[j] += g * pair.k_[i];
        });
        dk_sums.total(dk[i]), dgk_sums.total(dgk[i]), db_sums.total(db[i]);
        dgk[i] *= pair.decay_[i];
      }
      // Pass 2: da = S_prev y, then G <- D G + a y^T.
      for (std::int64_t i = 0; i < K; ++i) {
        LaneSums<S> da_sums;
        S* g_row = &G[i * V];
        const S* prev_row = &prev[i * V];
        over_lanes(V, [&](std::int64_t j, int l) DPLR_INLINE {
          da_sums.lane[l] += prev_row[j] * y[j];
          S& g = g_row[j];
          g *= pair.decay_[i];
          g += pair.a_[i] * y[j];
        });
        da_sums.total(da[i]);
      }
      const std::int64_t ko = pair.key_offset(step);
      store(out.dk, ko, dk, K), store(out.da, ko, da, K);
      store(out.db, ko, db, K), store(out.dgk, ko, dgk, K);
      store(out.dv, pair.value_offset(step), dv, V);
      token_progress().done.fetch_add(1, std::memory_order_relaxed);
    }
  }
  store(out.dh0, pair.state_offset(), G, K * V);
  return loss;
}

}  // namespace recurrent_detail

template <class S>
ExactTensorMap recurrent_reference(const DplrProblem& p, const RecurrentOptions& options,
                                   const InputDirection* direction, const S* epsilon, S* loss) {
  using namespace recurrent_detail;
  const int limbs = ScalarTraits<S>::limbs();
  const auto& s = p.shape;
  const std::int64_t N = p.num_sequences();
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V}, state{N, s.H, s.K, s.V};
  const bool backward = options.backward && p.grad_o.has_value();
  const bool want_loss = loss != nullptr;
  if (want_loss && !p.grad_o) throw std::invalid_argument("recurrent_reference: the loss needs do");

  Outputs out;
  out.o = ExactTensor(value, limbs), out.ht = ExactTensor(state, limbs);
  if (backward) {
    for (auto* t : {&out.dq, &out.dk, &out.da, &out.db, &out.dgk}) *t = ExactTensor(key, limbs);
    out.dv = ExactTensor(value, limbs);
    out.dh0 = ExactTensor(state, limbs);
  }
  if constexpr (Enclosure<S>)
    for (auto* t : {&out.o, &out.ht, &out.dq, &out.dk, &out.dv, &out.da, &out.db, &out.dgk, &out.dh0})
      t->radius.assign(static_cast<std::size_t>(t->numel()), 0.0);
  InputReader<S> reader(p, direction, epsilon);
  const std::int64_t pairs = N * s.H;
  std::int64_t steps = 0;
  for (std::int64_t n = 0; n < N; ++n) steps += p.sequence(n).length() * s.H * (backward ? 2 : 1);
  token_progress().total.fetch_add(steps, std::memory_order_relaxed);
  std::vector<S> pair_loss(want_loss ? pairs : 0);
  parallel_for_with(pairs, options.threads, [] { return Checkpoints<S>{}; }, [&](Checkpoints<S>& kept, std::int64_t pair) {
    S l = run_pair(reader, pair / s.H, pair % s.H, options, want_loss, out, kept);
    if (want_loss) pair_loss[pair] = l;
  });
  if (want_loss) {
    *loss = 0.0;
    for (const auto& l : pair_loss) *loss += l;  // in pair order: deterministic
  }
  ExactTensorMap result{{"o", std::move(out.o)}, {"ht", std::move(out.ht)}};
  if (backward) {
    result["dq"] = std::move(out.dq), result["dk"] = std::move(out.dk), result["dv"] = std::move(out.dv);
    result["da"] = std::move(out.da), result["db"] = std::move(out.db), result["dgk"] = std::move(out.dgk);
    result["dh0"] = std::move(out.dh0);
  }
  return result;
}

template <class S>
S central_difference_in(const DplrProblem& p, const InputDirection& direction, double epsilon_log2, int threads) {
  using std::ldexp;
  const S epsilon = ldexp(S(1.0), static_cast<int>(epsilon_log2));
  const S minus_epsilon = -epsilon;
  RecurrentOptions forward_only{.backward = false, .checkpoint_interval = 0, .threads = threads};
  S plus = 0.0, minus = 0.0;
  recurrent_reference<S>(p, forward_only, &direction, &epsilon, &plus);
  recurrent_reference<S>(p, forward_only, &direction, &minus_epsilon, &minus);
  return (plus - minus) / (epsilon + epsilon);
}

template <class S>
double central_difference(const DplrProblem& p, const InputDirection& direction, double epsilon_log2, int threads) {
  return ScalarTraits<S>::to_double(central_difference_in<S>(p, direction, epsilon_log2, threads));
}

template <class S>
DirectionalCheck directional_gradient_check(const DplrProblem& p, const InputDirection& direction,
                                            double epsilon_log2, int threads) {
  using std::abs;
  using std::ldexp;
  RecurrentOptions options{.backward = true, .checkpoint_interval = 0, .threads = threads};
  const ExactTensorMap grads = recurrent_reference<S>(p, options);
  // <grad, d> in S, from the gradients' expansions (exact sums of doubles).
  S analytic = 0.0, part = 0.0;
  for (const auto& [name, d] : direction.by_name) {
    const ExactTensor& g = grads.at(gradient_name(name));
    for (std::size_t i = 0; i < d.size(); ++i) {
      if (d[i] == 0.0) continue;
      part = 0.0;
      for (int l = 0; l < g.limbs; ++l) part += g.parts[i * g.limbs + l];
      analytic += part * d[i];
    }
  }
  const S fd = central_difference_in<S>(p, direction, epsilon_log2, threads);
  const S diff = abs(fd - analytic);
  S denominator = abs(analytic);
  if (denominator == 0.0) denominator = 1.0;
  const S relative = diff / denominator;
  using T = ScalarTraits<S>;
  return {T::to_double(fd), T::to_double(analytic), T::to_double(relative)};
}

}  // namespace dplr
