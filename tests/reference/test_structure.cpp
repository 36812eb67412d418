// Structural properties: varlen equals each sequence alone, reverse equals flipped inputs, outputs are
// jointly linear in (v, h0), and checkpointing and thread count change no bit.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "generators/rapidcheck.hpp"
#include "helpers.hpp"

namespace dplr {
namespace {

using testing::bitwise_equal;
using testing::run;

// The tokens [begin, end) of one sequence as a problem of its own (B = 1).
DplrProblem slice_sequence(const DplrProblem& p, std::int64_t n) {
  const SequenceSpan span = p.sequence(n);
  const auto& s = p.shape;
  DplrProblem one = p;
  one.cu_seqlens.clear();
  one.shape = {1, span.length(), s.H, s.K, s.V};
  auto slice_tokens = [&](const Tensor& t, std::int64_t D) {
    Tensor out{t.dtype, {1, span.length(), s.H, D}, {}};
    for (std::int64_t tok = span.begin; tok < span.end; ++tok)
      for (std::int64_t h = 0; h < s.H; ++h)
        for (std::int64_t i = 0; i < D; ++i) out.values.push_back(t.values[p.token_index(span.batch, tok, h, i, D)]);
    return out;
  };
  auto slice_state = [&](const Tensor& t) {
    const std::int64_t size = s.H * s.K * s.V;
    return Tensor{t.dtype, {1, s.H, s.K, s.V}, {t.values.begin() + n * size, t.values.begin() + (n + 1) * size}};
  };
  for (auto name : {"q", "k", "a", "b", "gk"}) *find_input(one, name) = slice_tokens(*find_input(p, name), s.K);
  one.v = slice_tokens(p.v, s.V);
  if (p.grad_o) one.grad_o = slice_tokens(*p.grad_o, s.V);
  if (p.h0) one.h0 = slice_state(*p.h0);
  if (p.grad_ht) one.grad_ht = slice_state(*p.grad_ht);
  return one;
}

RC_GTEST_PROP(Structure, VarlenEqualsEachSequenceAlone, ()) {
  CaseLimits limits;
  limits.allow_varlen = false;
  CaseSpec spec = *gen_case_spec(limits);
  spec.shape.B = 1;
  spec.cu_seqlens = *gen_cu_seqlens(spec.shape.T);
  const DplrProblem packed = generate_case(spec);
  const auto whole = run(packed, "double");
  for (std::int64_t n = 0; n < packed.num_sequences(); ++n) {
    const DplrProblem one = slice_sequence(packed, n);
    const auto alone = run(one, "double");
    const SequenceSpan span = packed.sequence(n);
    for (const auto& [name, tensor] : alone.tensors) {
      const ExactTensor& big = whole.tensors.at(name);
      const bool per_token = tensor.shape[1] == span.length() && name != "ht" && name != "dh0";
      for (std::int64_t i = 0; i < tensor.numel(); ++i) {
        const std::int64_t offset = per_token ? span.begin * (tensor.numel() / std::max<std::int64_t>(1, span.length()))
                                              : n * tensor.numel();
        RC_ASSERT(big.value(offset + i) == tensor.value(i));
      }
    }
  }
}

RC_GTEST_PROP(Structure, ReverseEqualsFlippedInputs, ()) {
  CaseLimits limits;
  limits.allow_reverse = false;
  CaseSpec spec = *gen_case_spec(limits);
  DplrProblem forward = generate_case(spec);
  DplrProblem flipped = forward;
  flipped.reverse = true;
  // Flip tokens within each sequence of the inputs of `flipped`.
  std::vector<std::int64_t> source(forward.shape.T);
  for (std::int64_t n = 0; n < forward.num_sequences(); ++n) {
    const SequenceSpan span = forward.sequence(n);
    for (std::int64_t t = span.begin; t < span.end; ++t) source[t] = span.end - 1 - (t - span.begin);
  }
  const auto& s = forward.shape;
  auto flip = [&](Tensor& t, std::int64_t D) {
    const Tensor original = t;
    for (std::int64_t b = 0; b < s.B; ++b)
      for (std::int64_t tok = 0; tok < s.T; ++tok)
        for (std::int64_t h = 0; h < s.H; ++h)
          for (std::int64_t i = 0; i < D; ++i)
            t.values[forward.token_index(b, tok, h, i, D)] = original.values[forward.token_index(b, source[tok], h, i, D)];
  };
  for (auto name : {"q", "k", "a", "b", "gk"}) flip(*find_input(flipped, name), s.K);
  flip(flipped.v, s.V);
  flip(*flipped.grad_o, s.V);
  const auto expected = run(forward, "double");
  auto got = run(flipped, "double");
  for (auto& [name, tensor] : got.tensors) {
    if (name != "ht" && name != "dh0") {
      Tensor as_tensor{DType::F64, tensor.shape, tensor.rounded()};
      flip(as_tensor, tensor.shape[3]);
      for (std::int64_t i = 0; i < tensor.numel(); ++i) RC_ASSERT(as_tensor.values[i] == expected.tensors.at(name).value(i));
    } else {
      RC_ASSERT(bitwise_equal(tensor, expected.tensors.at(name)));
    }
  }
}

TEST(Structure, OutputsAreJointlyLinearInValuesAndInitialState) {
  CaseSpec spec;
  spec.shape = {2, 13, 2, 5, 4};
  spec.dtype = DType::F64;
  spec.seed = 3;
  spec.with_backward = false;
  const DplrProblem p1 = generate_case(spec);
  spec.seed = 4;
  DplrProblem p2 = generate_case(spec);
  // Same q, k, a, b, gk; v and h0 from the second draw.
  p2.q = p1.q, p2.k = p1.k, p2.a = p1.a, p2.b = p1.b, p2.gk = p1.gk;
  DplrProblem combined = p1;
  for (std::size_t i = 0; i < combined.v.values.size(); ++i) combined.v.values[i] = 3 * p1.v.values[i] - 2 * p2.v.values[i];
  for (std::size_t i = 0; i < combined.h0->values.size(); ++i)
    combined.h0->values[i] = 3 * p1.h0->values[i] - 2 * p2.h0->values[i];
  const auto r1 = run(p1, "qd"), r2 = run(p2, "qd"), rc = run(combined, "qd");
  for (auto name : {"o", "ht"}) {
    const ExactTensor &x1 = r1.tensors.at(name), &x2 = r2.tensors.at(name), &xc = rc.tensors.at(name);
    double scale = 0.0, worst = 0.0;
    for (std::int64_t i = 0; i < xc.numel(); ++i) scale = std::max(scale, std::fabs(xc.value(i)));
    for (std::int64_t i = 0; i < xc.numel(); ++i)
      worst = std::max(worst, std::fabs(xc.value(i) - (3 * x1.value(i) - 2 * x2.value(i))));
    EXPECT_LT(worst / scale, 1e-14) << name;  // the leading doubles: rounding of the comparison only
  }
}

TEST(Structure, CheckpointingAndThreadsChangeNoBit) {
  CaseSpec spec;
  spec.shape = {2, 23, 3, 4, 3};
  spec.dtype = DType::BF16;
  spec.seed = 11;
  const DplrProblem p = generate_case(spec);
  for (const char* precision : {"double", "dd", "128"}) {
    const auto unchecked = run(p, precision, /*interval=*/p.shape.T);  // one segment: every state kept
    for (std::int64_t interval : {1, 2, 5, 0}) {
      const auto checked = run(p, precision, interval);
      for (const auto& [name, tensor] : unchecked.tensors)
        EXPECT_TRUE(bitwise_equal(tensor, checked.tensors.at(name))) << precision << " interval " << interval << " " << name;
    }
    ReferenceOptions one_thread;
    one_thread.precision = Precision::parse(precision);
    one_thread.threads = 1;
    const auto serial = run_reference(p, one_thread);
    for (const auto& [name, tensor] : unchecked.tensors) EXPECT_TRUE(bitwise_equal(tensor, serial.tensors.at(name))) << name;
  }
}

}  // namespace
}  // namespace dplr
