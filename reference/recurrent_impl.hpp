// Template bodies of reference/recurrent.hpp. Include only from reference/instantiate_<type>.cpp.
//
// Inner loops update in place (`acc += a * b`, `x *= c`): for mp_real each is one MPFR call with no
// temporary, which is what keeps the multiprecision path within a small factor of its op count.
#pragma once
#include <algorithm>
#include <cmath>
#include <utility>

#include "reference/parallel.hpp"
#include "reference/recurrent.hpp"
#include "reference/scalar.hpp"

namespace dplr {
namespace recurrent_detail {

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
  // the backward reuses what the segment's recomputation evaluated), decay = exp(gk).
  void load(std::int64_t step, const std::vector<S>* known_decay = nullptr) {
    using std::exp;
    const std::int64_t ko = key_offset(step), vo = value_offset(step);
    in_.read("q", p_.q, ko, K_, q_);
    in_.read("k", p_.k, ko, K_, k_);
    in_.read("a", p_.a, ko, K_, a_);
    in_.read("b", p_.b, ko, K_, b_);
    if (known_decay) {
      for (std::int64_t i = 0; i < K_; ++i) decay_[i] = (*known_decay)[i];
    } else {
      in_.read("gk", p_.gk, ko, K_, decay_);
      for (auto& d : decay_) d = exp(d);
    }
    in_.read("v", p_.v, vo, V_, v_);
  }

  // x = S^T a (before the decay), then S <- D S + b x^T + k v^T. Needs load(step) first.
  void advance(std::vector<S>& state) {
    for (auto& x : x_) x = 0.0;
    for (std::int64_t i = 0; i < K_; ++i)
      for (std::int64_t j = 0; j < V_; ++j) x_[j] += state[i * V_ + j] * a_[i];
    for (std::int64_t i = 0; i < K_; ++i)
      for (std::int64_t j = 0; j < V_; ++j) {
        S& s = state[i * V_ + j];
        s *= decay_[i];
        s += b_[i] * x_[j];
        s += k_[i] * v_[j];
      }
  }

  // o = scale S^T q into out_v_.
  const std::vector<S>& output(const std::vector<S>& state) {
    for (auto& o : out_v_) o = 0.0;
    for (std::int64_t i = 0; i < K_; ++i)
      for (std::int64_t j = 0; j < V_; ++j) out_v_[j] += state[i * V_ + j] * q_[i];
    for (auto& o : out_v_) o *= scale_;
    return out_v_;
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

template <class S>
S run_pair(const InputReader<S>& reader, std::int64_t n, std::int64_t h, const RecurrentOptions& options,
           bool want_loss, Outputs& out) {
  const DplrProblem& p = reader.problem();
  PairRecurrence<S> pair(reader, n, h);
  const std::int64_t K = p.shape.K, V = p.shape.V, L = pair.steps();
  const bool backward = options.backward && p.grad_o.has_value();
  std::int64_t interval = options.checkpoint_interval;
  if (interval <= 0) interval = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(std::sqrt(double(L)))));

  std::vector<S> state;
  pair.initial_state(state);
  std::vector<std::vector<S>> checkpoints;
  std::vector<S> grad_o(V), grad_ht;
  S loss = 0.0;

  for (std::int64_t step = 0; step < L; ++step) {
    if (backward && step % interval == 0) checkpoints.push_back(state);
    pair.load(step);
    pair.advance(state);
    const auto& o = pair.output(state);
    store(out.o, pair.value_offset(step), o, V);
    token_progress().done.fetch_add(1, std::memory_order_relaxed);
    if (want_loss) {
      reader.read("do", *p.grad_o, pair.value_offset(step), V, grad_o);
      for (std::int64_t j = 0; j < V; ++j) loss += o[j] * grad_o[j];
    }
  }
  store(out.ht, pair.state_offset(), state, K * V);
  if (want_loss && p.grad_ht) {
    grad_ht.resize(K * V);
    reader.read("dht", *p.grad_ht, pair.state_offset(), K * V, grad_ht);
    for (std::int64_t i = 0; i < K * V; ++i) loss += state[i] * grad_ht[i];
  }
  if (!backward) return loss;

  // G = dL/dS, walked back segment by segment; states of a segment are recomputed from its checkpoint.
  std::vector<S> G(K * V, S(0.0));
  if (p.grad_ht) reader.read("dht", *p.grad_ht, pair.state_offset(), K * V, G);
  const std::int64_t segment = std::min(interval, std::max<std::int64_t>(L, 1));  // no segment is longer than L
  std::vector<std::vector<S>> segment_states(segment + 1, std::vector<S>(K * V));
  std::vector<std::vector<S>> segment_decays(segment, std::vector<S>(K));
  std::vector<S> scaled_q(K), x(V), y(V), dv(V), dq(K), dk(K), da(K), db(K), dgk(K);
  for (std::int64_t c = static_cast<std::int64_t>(checkpoints.size()) - 1; c >= 0; --c) {
    const std::int64_t first = c * interval, last = std::min(L, first + interval);
    segment_states[0] = checkpoints[c];
    for (std::int64_t step = first; step < last; ++step) {
      segment_states[step - first + 1] = segment_states[step - first];
      pair.load(step);
      pair.advance(segment_states[step - first + 1]);
      segment_decays[step - first] = pair.decay_;
    }
    for (std::int64_t step = last - 1; step >= first; --step) {
      const std::vector<S>& prev = segment_states[step - first];
      const std::vector<S>& cur = segment_states[step - first + 1];
      pair.load(step, &segment_decays[step - first]);
      reader.read("do", *p.grad_o, pair.value_offset(step), V, grad_o);
      for (std::int64_t i = 0; i < K; ++i) {
        scaled_q[i] = pair.q_[i];
        scaled_q[i] *= pair.scale_;
      }
      for (auto* col : {&x, &y, &dv}) for (auto& e : *col) e = 0.0;
      // Pass 1: G += scale q do^T; row reductions dq, dk, dgk; column sums x = S_prev^T a, y = G^T b, dv = G^T k.
      for (std::int64_t i = 0; i < K; ++i) {
        dq[i] = 0.0, dk[i] = 0.0, dgk[i] = 0.0;
        for (std::int64_t j = 0; j < V; ++j) {
          S& g = G[i * V + j];
          g += scaled_q[i] * grad_o[j];
          dq[i] += cur[i * V + j] * grad_o[j];
          dk[i] += g * pair.v_[j];
          dgk[i] += g * prev[i * V + j];
          x[j] += prev[i * V + j] * pair.a_[i];
          y[j] += g * pair.b_[i];
          dv[j] += g * pair.k_[i];
        }
        dq[i] *= pair.scale_;
        dgk[i] *= pair.decay_[i];
      }
      // Pass 2: db = G x, da = S_prev y, then G <- D G + a y^T.
      for (std::int64_t i = 0; i < K; ++i) {
        db[i] = 0.0, da[i] = 0.0;
        for (std::int64_t j = 0; j < V; ++j) {
          S& g = G[i * V + j];
          db[i] += g * x[j];
          da[i] += prev[i * V + j] * y[j];
          g *= pair.decay_[i];
          g += pair.a_[i] * y[j];
        }
      }
      const std::int64_t ko = pair.key_offset(step);
      store(out.dq, ko, dq, K), store(out.dk, ko, dk, K), store(out.da, ko, da, K);
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
  parallel_for(pairs, options.threads, [&](std::int64_t pair) {
    S l = run_pair(reader, pair / s.H, pair % s.H, options, want_loss, out);
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
