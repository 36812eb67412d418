// Invariants of the stage tensors, checked at quad-double (212 bits) against independent arithmetic:
// the causal shape of every A matrix, A_ab_inv unit lower with (I - A_ab) A_ab_inv = I, v_new equal to
// the recurrence's x_t = S_{t-1}^T a_t and h equal to its state before each chunk; plus the stage table
// and the refusals.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "helpers.hpp"
#include "reference/scalar.hpp"

namespace dplr {
namespace {

constexpr int kChunk = 16;

// Element i of an expansion from a quad-double run, exactly.
qd_real element(const ExactTensor& t, std::int64_t i) {
  qd_real x = 0.0;
  for (int l = 0; l < t.limbs; ++l) x += t.parts[static_cast<std::size_t>(i) * t.limbs + l];
  return x;
}

// Two varlen sequences whose lengths are not multiples of the chunk size, h0 and dht present.
DplrProblem invariant_case(const std::string& distribution) {
  CaseSpec spec;
  spec.shape = {1, 2 * kChunk + 10, 2, 5, 3};
  spec.cu_seqlens = {0, kChunk + 3, 2 * kChunk + 10};
  spec.distribution = distribution;
  spec.seed = 3;
  return generate_case(spec);
}

struct ChunkRows {
  std::int64_t first_token, length;
};
std::vector<ChunkRows> chunks_of(const DplrProblem& p, std::int64_t n) {
  std::vector<ChunkRows> rows;
  const SequenceSpan span = p.sequence(n);
  for (std::int64_t t = span.begin; t < span.end; t += kChunk) rows.push_back({t, std::min<std::int64_t>(kChunk, span.end - t)});
  return rows;
}

class ChunkInvariants : public ::testing::TestWithParam<std::string> {};

TEST_P(ChunkInvariants, AMatricesAreCausalAndTheWYInverseIsExact) {
  const DplrProblem p = invariant_case(GetParam());
  const ChunkStages st = run_chunk_stages(p, kChunk, Precision::parse("qd"));
  const auto& s = p.shape;
  auto at = [&](const char* name, std::int64_t t, std::int64_t h, std::int64_t col) {
    return element(st.tensors.at(name), p.token_index(0, t, h, col, kChunk));
  };
  for (std::int64_t n = 0; n < p.num_sequences(); ++n)
    for (const ChunkRows& c : chunks_of(p, n))
      for (std::int64_t h = 0; h < s.H; ++h) {
        double worst_residual = 0.0;
        for (std::int64_t r = 0; r < c.length; ++r) {
          const std::int64_t t = c.first_token + r;
          for (std::int64_t col = 0; col < kChunk; ++col) {
            if (col >= r) {
              EXPECT_EQ(at("A_ab", t, h, col), 0.0) << "A_ab[" << r << "," << col << "] token " << t;
              EXPECT_EQ(at("A_ak", t, h, col), 0.0) << "A_ak[" << r << "," << col << "] token " << t;
            }
            if (col > r) {
              EXPECT_EQ(at("A_qk", t, h, col), 0.0);
              EXPECT_EQ(at("A_qb", t, h, col), 0.0);
              EXPECT_EQ(at("A_ab_inv", t, h, col), 0.0) << "A_ab_inv above the diagonal";
            }
            if (col == r) {
              EXPECT_EQ(at("A_ab_inv", t, h, col), 1.0) << "A_ab_inv diagonal";
            }
            if (col >= c.length) continue;
            // ((I - A_ab) A_ab_inv)[r, col] - I[r, col]
            qd_real residual = at("A_ab_inv", t, h, col) - qd_real(r == col ? 1.0 : 0.0);
            for (std::int64_t m = 0; m < c.length; ++m)
              residual -= at("A_ab", t, h, m) * at("A_ab_inv", c.first_token + m, h, col);
            worst_residual = std::max(worst_residual, std::fabs(to_double(residual)));
          }
        }
        EXPECT_LT(worst_residual, 0x1p-190) << "(I - A_ab) A_ab_inv - I, sequence " << n << " head " << h;
      }
}

// An independent recurrence in quad-double (the contract's equations, plain loops): x_t and the state
// before each chunk, against the chunk form's v_new and h.
TEST_P(ChunkInvariants, VNewIsTheRecurrencesXAndHItsStateBeforeEachChunk) {
  const DplrProblem p = invariant_case(GetParam());
  const ChunkStages st = run_chunk_stages(p, kChunk, Precision::parse("qd"));
  const ChunkGrid grid = ChunkGrid::of(p, kChunk);
  const auto& s = p.shape;
  const std::int64_t K = s.K, V = s.V;
  for (std::int64_t n = 0; n < p.num_sequences(); ++n)
    for (std::int64_t h = 0; h < s.H; ++h) {
      std::vector<qd_real> state(K * V);
      for (std::int64_t i = 0; i < K * V; ++i) state[i] = p.h0->values[p.state_index(n, h, 0, 0) + i];
      const SequenceSpan span = p.sequence(n);
      for (std::int64_t t = span.begin; t < span.end; ++t) {
        const std::int64_t step = t - span.begin;
        if (step % kChunk == 0) {
          const std::int64_t base = ((grid.first_chunk[n] + step / kChunk) * s.H + h) * K * V;
          for (std::int64_t i = 0; i < K * V; ++i) {
            const qd_real expected = state[i], got = element(st.tensors.at("h"), base + i);
            EXPECT_LE(std::fabs(to_double(got - expected)), 0x1p-190 * std::max(1.0, std::fabs(to_double(expected))))
                << "h, sequence " << n << " chunk " << step / kChunk;
          }
        }
        auto key = [&](const Tensor& x, std::int64_t i) { return x.values[p.token_index(0, t, h, i, K)]; };
        std::vector<qd_real> x(V, qd_real(0.0));
        for (std::int64_t i = 0; i < K; ++i)
          for (std::int64_t j = 0; j < V; ++j) x[j] += state[i * V + j] * key(p.a, i);
        for (std::int64_t j = 0; j < V; ++j) {
          const qd_real got = element(st.tensors.at("v_new"), p.token_index(0, t, h, j, V));
          EXPECT_LE(std::fabs(to_double(got - x[j])), 0x1p-190 * std::max(1.0, std::fabs(to_double(x[j]))))
              << "v_new vs x_t at token " << t << " head " << h;
        }
        for (std::int64_t i = 0; i < K; ++i)
          for (std::int64_t j = 0; j < V; ++j)
            state[i * V + j] = exp(qd_real(key(p.gk, i))) * state[i * V + j] + key(p.b, i) * x[j] +
                               key(p.k, i) * p.v.values[p.token_index(0, t, h, j, V)];
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Distributions, ChunkInvariants,
                         ::testing::Values("fla", "strong-decay", "edge-of-stability", "free-ab"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

TEST(ChunkLayout, ShapesAndGridFollowFla) {
  CaseSpec spec;
  spec.shape = {1, 50, 2, 3, 4};
  spec.cu_seqlens = {0, 17, 17, 50};  // an empty sequence has no chunk
  const DplrProblem p = generate_case(spec);
  const ChunkGrid grid = ChunkGrid::of(p, 16);
  EXPECT_EQ(grid.chunks, (std::vector<std::int64_t>{2, 0, 3}));
  EXPECT_EQ(grid.first_chunk, (std::vector<std::int64_t>{0, 2, 2}));
  EXPECT_EQ(grid.NT, 5);
  const ChunkStages st = run_chunk_stages(p, 16, Precision::parse("double"));
  EXPECT_EQ(st.tensors.at("h").shape, (std::vector<std::int64_t>{1, 5, 2, 3, 4}));
  EXPECT_EQ(st.tensors.at("dh").shape, (std::vector<std::int64_t>{1, 5, 2, 3, 4}));
  EXPECT_EQ(st.tensors.at("A_ab_inv").shape, (std::vector<std::int64_t>{1, 50, 2, 16}));
  EXPECT_EQ(st.tensors.at("ht").shape, (std::vector<std::int64_t>{3, 2, 3, 4}));
  // The empty sequence passes its state and gradient through.
  for (std::int64_t i = 0; i < 2 * 3 * 4; ++i) {
    EXPECT_EQ(st.tensors.at("ht").value(24 + i), p.h0->values[24 + i]);
    EXPECT_EQ(st.tensors.at("dh0").value(24 + i), p.grad_ht->values[24 + i]);
  }
  CaseSpec batched;
  batched.shape = {2, 33, 1, 2, 2};
  const ChunkGrid batch_grid = ChunkGrid::of(generate_case(batched), 16);
  EXPECT_EQ(batch_grid.rows, 2);
  EXPECT_EQ(batch_grid.NT, 3);
}

TEST(ChunkStageTable, OrderAndOwnership) {
  EXPECT_EQ(chunk_stage_order(), (std::vector<std::string>{"cumsum", "A", "WY", "h", "o", "o_bwd", "h_bwd", "WY_bwd",
                                                           "A_bwd", "cumsum_bwd"}));
  EXPECT_EQ(chunk_stage_of("A_ab_inv"), "WY");
  EXPECT_EQ(chunk_stage_of("dgk"), "cumsum_bwd");
  EXPECT_THROW(chunk_stage_of("du"), InputError);
  // Every tensor a run produces has exactly one stage, and every stage tensor is produced.
  CaseSpec spec;
  spec.shape = {1, 20, 1, 2, 2};
  const ChunkStages st = run_chunk_stages(generate_case(spec), 16, Precision::parse("double"));
  std::size_t listed = 0;
  for (const auto& stage : chunk_stage_table()) {
    listed += stage.tensors.size();
    for (const auto& name : stage.tensors) EXPECT_TRUE(st.tensors.count(name)) << name;
  }
  EXPECT_EQ(listed, st.tensors.size());
}

TEST(ChunkStageTable, ForwardOnlyWithoutDo) {
  CaseSpec spec;
  spec.shape = {1, 20, 1, 2, 2};
  spec.with_backward = false;
  const ChunkStages st = run_chunk_stages(generate_case(spec), 16, Precision::parse("double"));
  EXPECT_TRUE(st.tensors.count("o"));
  EXPECT_FALSE(st.tensors.count("dq"));
  EXPECT_FALSE(st.tensors.count("dh"));
}

TEST(ChunkRefusals, ChunkSizeAndReverse) {
  CaseSpec spec;
  spec.shape = {1, 8, 1, 2, 2};
  DplrProblem p = generate_case(spec);
  try {
    run_chunk_stages(p, 0, Precision::parse("double"));
    ADD_FAILURE() << "chunk size 0 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("chunk size"), std::string::npos) << e.what();
  }
  p.reverse = true;
  try {
    run_chunk_stages(p, 16, Precision::parse("double"));
    ADD_FAILURE() << "reverse accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("reverse"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dplr
