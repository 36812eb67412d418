// The rigorous mode (Arb balls, reference/ball.hpp): every exact value must lie inside its ball.
//   - golden: mpmath's values at 60 digits (tests/data/golden/make_golden.py, an independent implementation
//     of the recurrence) lie inside the balls of every output and gradient, and within the f64 midpoint's
//     stated bound (radius + half an ulp); a planted wrong radius (the balls shrunk) is caught;
//   - closed form: with a = b = k = 0, S_t = diag(exp(gk_1 + ... + gk_t)) h0 (MPFR at 400 bits) lies inside,
//     and the gradients that are exactly zero (dv, da, db) come out as exact zeros (radius 0);
//   - the working precision grows until the asked proven bits are reached, and a limit below them is refused.
#include <gtest/gtest.h>
#include <mpfr.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/reference.hpp"

namespace dplr {
namespace {

// An MPFR number at `bits`, freed on scope exit.
struct Mp {
  mpfr_t v;
  explicit Mp(int bits = 2048) { mpfr_init2(v, bits); mpfr_set_zero(v, 1); }
  ~Mp() { mpfr_clear(v); }
};

// |exact - sum of the element's parts|: sums exactly at 2048 bits (the parts span far fewer).
double distance_to_expansion(const ExactTensor& t, std::int64_t i, const mpfr_t exact, bool leading_only) {
  Mp diff;
  mpfr_set(diff.v, exact, MPFR_RNDN);
  for (int l = 0; l < (leading_only ? 1 : t.limbs); ++l) mpfr_sub_d(diff.v, diff.v, t.parts[i * t.limbs + l], MPFR_RNDN);
  return std::fabs(mpfr_get_d(diff.v, MPFR_RNDU));
}

// Elements whose exact value (given as decimal strings, trusted to `relative_slack`) lies outside the ball.
// `f64_bound`: checks the file's claim, |exact - value(i)| <= radius + half an ulp of value(i), instead.
std::int64_t outside(const ExactTensor& t, const std::vector<std::string>& exact, double relative_slack,
                     bool f64_bound = false, double radius_factor = 1.0) {
  EXPECT_EQ(static_cast<std::int64_t>(exact.size()), t.numel());
  EXPECT_EQ(t.radius.size(), exact.size());
  std::int64_t count = 0;
  for (std::size_t i = 0; i < exact.size(); ++i) {
    Mp x;
    mpfr_set_str(x.v, exact[i].c_str(), 10, MPFR_RNDN);
    const double distance = distance_to_expansion(t, i, x.v, f64_bound);
    const double half_ulp = f64_bound ? 0.5 * (std::nextafter(std::fabs(t.value(i)), INFINITY) - std::fabs(t.value(i))) : 0.0;
    const double allowed = t.radius[i] * radius_factor + half_ulp + relative_slack * std::fabs(mpfr_get_d(x.v, MPFR_RNDN));
    if (distance > allowed) ++count;
  }
  return count;
}

struct Golden {
  DplrProblem problem;
  std::map<std::string, std::vector<std::string>> outputs;
};

Golden load_golden(const std::string& name) {
  const std::string path = std::string(DPLR_GOLDEN_DIR) + "/" + name + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  const nlohmann::json doc = nlohmann::json::parse(in);
  const auto shape = doc["shape"].get<std::vector<std::int64_t>>();
  const std::int64_t B = shape[0], T = shape[1], H = shape[2], K = shape[3], V = shape[4];
  TensorMap tensors;
  for (const auto& [input, values] : doc["inputs"].items()) {
    std::vector<std::int64_t> dims;
    if (input == "h0" || input == "dht") dims = {B, H, K, V};
    else if (input == "v" || input == "do") dims = {B, T, H, V};
    else dims = {B, T, H, K};
    Tensor t{DType::F64, dims, {}};
    for (const auto& hex : values) t.values.push_back(std::strtod(hex.get<std::string>().c_str(), nullptr));
    tensors[input] = std::move(t);
  }
  const double scale = std::strtod(doc["scale"].get<std::string>().c_str(), nullptr);
  Golden g{problem_from_tensors(tensors, scale, false, name), {}};
  for (const auto& [output, values] : doc["outputs"].items()) g.outputs[output] = values.get<std::vector<std::string>>();
  return g;
}

ReferenceResult rigorous(const DplrProblem& p, double bits, int first_precision = 0, int max_precision = 4096) {
  ReferenceOptions options;
  options.origin = "test case";
  return run_rigorous_reference(p, options, {bits, first_precision, max_precision});
}

constexpr double kGoldenSlack = 1e-50;  // mpmath at 60 digits, after a few hundred operations

class GoldenCase : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenCase, EveryGoldenValueLiesInsideItsBall) {
  const Golden g = load_golden(GetParam());
  const ReferenceResult r = rigorous(g.problem, 100);
  EXPECT_GE(r.min_proven_bits(), 100);
  ASSERT_EQ(r.tensors.size(), g.outputs.size());
  for (const auto& [name, exact] : g.outputs) {
    SCOPED_TRACE(name);
    const ExactTensor& t = r.tensors.at(name);
    EXPECT_EQ(outside(t, exact, kGoldenSlack), 0);
    EXPECT_EQ(outside(t, exact, kGoldenSlack, /*f64_bound=*/true), 0);
  }
}

TEST_P(GoldenCase, TheGoldenValuesAgreeWithTheEstimatedReference) {
  // The golden file itself checked against the existing reference at qd (estimated ~200 bits).
  const Golden g = load_golden(GetParam());
  ReferenceOptions options;
  options.precision = Precision::parse("qd");
  const ReferenceResult r = run_reference(g.problem, options);
  for (const auto& [name, exact] : g.outputs) {
    SCOPED_TRACE(name);
    ExactTensor t = r.tensors.at(name);
    t.radius.assign(static_cast<std::size_t>(t.numel()), 0.0);
    EXPECT_EQ(outside(t, exact, 1e-45), 0);
  }
}

TEST_P(GoldenCase, AShrunkBallIsCaught) {
  // At 40 working bits the midpoints are off by about 2^-40: balls shrunk 2^20 no longer hold the golden values.
  const Golden g = load_golden(GetParam());
  const ReferenceResult r = rigorous(g.problem, 20, 40, 40);
  std::int64_t caught = 0;
  for (const auto& [name, exact] : g.outputs) {
    EXPECT_EQ(outside(r.tensors.at(name), exact, kGoldenSlack), 0) << name;
    caught += outside(r.tensors.at(name), exact, kGoldenSlack, false, 0x1p-20);
  }
  EXPECT_GT(caught, 0);
}

INSTANTIATE_TEST_SUITE_P(Mpmath, GoldenCase,
                         ::testing::Values("small_B1_T6_H1_K3_V2", "heads_B2_T5_H2_K4_V3_no_h0"));

TEST(Rigorous, ClosedFormWithNoRankOneTermsAndNoWrites) {
  CaseSpec spec;
  spec.shape = {1, 16, 2, 4, 3};
  spec.seed = 5;
  DplrProblem p = generate_case(spec);
  for (auto* t : {&p.a, &p.b, &p.k}) std::fill(t->values.begin(), t->values.end(), 0.0);
  const ReferenceResult r = rigorous(p, 80);
  const auto& s = p.shape;
  // o_t[j] = scale sum_i exp(G_t[i]) h0[i][j] q_t[i], G_t the running sum of gk; ht = diag(exp(G_T)) h0.
  std::vector<std::string> o, ht;
  for (std::int64_t t = 0; t < s.T; ++t)
    for (std::int64_t h = 0; h < s.H; ++h)
      for (std::int64_t j = 0; j < s.V; ++j) {
        Mp sum(400), term(400), g(400);
        for (std::int64_t i = 0; i < s.K; ++i) {
          mpfr_set_zero(g.v, 1);
          for (std::int64_t u = 0; u <= t; ++u) mpfr_add_d(g.v, g.v, p.gk.values[p.token_index(0, u, h, i, s.K)], MPFR_RNDN);
          mpfr_exp(term.v, g.v, MPFR_RNDN);
          mpfr_mul_d(term.v, term.v, p.h0->values[p.state_index(0, h, i, j)], MPFR_RNDN);
          if (t == s.T - 1) {
            std::vector<char> buffer(200);
            mpfr_snprintf(buffer.data(), buffer.size(), "%.100Re", term.v);
            ht.resize(static_cast<std::size_t>(s.H * s.K * s.V));
            ht[p.state_index(0, h, i, j)] = buffer.data();
          }
          mpfr_mul_d(term.v, term.v, p.q.values[p.token_index(0, t, h, i, s.K)], MPFR_RNDN);
          mpfr_add(sum.v, sum.v, term.v, MPFR_RNDN);
        }
        mpfr_mul_d(sum.v, sum.v, p.scale, MPFR_RNDN);
        std::vector<char> buffer(200);
        mpfr_snprintf(buffer.data(), buffer.size(), "%.100Re", sum.v);
        o.push_back(buffer.data());
      }
  EXPECT_EQ(outside(r.tensors.at("o"), o, 1e-90), 0);
  EXPECT_EQ(outside(r.tensors.at("ht"), ht, 1e-90), 0);
  for (const char* zero : {"dv", "da", "db"}) {
    const ExactTensor& t = r.tensors.at(zero);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      ASSERT_EQ(t.value(i), 0.0) << zero << " element " << i;
      ASSERT_EQ(t.radius[i], 0.0) << zero << " element " << i;
    }
  }
  EXPECT_GE(r.min_proven_bits(), 80);  // exact zeros do not lower it
}

TEST(Rigorous, PrecisionGrowsUntilTheBitsAreProvenAndALimitIsRefused) {
  CaseSpec spec;
  spec.shape = {1, 64, 1, 8, 8};
  const DplrProblem p = generate_case(spec);
  const ReferenceResult r = rigorous(p, 120, 64);  // the first run, at 64 bits, cannot prove 120
  EXPECT_GE(r.min_proven_bits(), 120);
  EXPECT_GE(r.notes.size(), 2u);
  EXPECT_GT(r.precision.significand_bits(), 120);
  try {
    rigorous(p, 120, 64, 100);
    FAIL() << "a limit below the asked bits was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("limit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at 100 working bits"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dplr
