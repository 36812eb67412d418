// Bad input gives one clear InputError naming the tensor and what was expected; never a crash.
#include <limits>

#include "helpers.hpp"

namespace dplr {
namespace {

TensorMap valid_tensors() {
  CaseSpec spec;
  spec.shape = {1, 6, 2, 3, 4};
  return problem_to_tensors(generate_case(spec));
}

std::string error_of(const TensorMap& tensors) {
  try {
    problem_from_tensors(tensors, std::numeric_limits<double>::quiet_NaN(), false, "case.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(BadInput, ValidTensorsPass) { EXPECT_EQ(error_of(valid_tensors()), ""); }

TEST(BadInput, ShapeMismatchNamesTensorAndExpectedShape) {
  auto t = valid_tensors();
  t["k"].shape = {1, 6, 2, 4};
  t["k"].values.resize(48);
  const auto message = error_of(t);
  EXPECT_NE(message.find("case.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("'k'"), std::string::npos) << message;
  EXPECT_NE(message.find("expected [1, 6, 2, 3]"), std::string::npos) << message;
}

TEST(BadInput, MissingRequiredTensor) {
  auto t = valid_tensors();
  t.erase("gk");
  EXPECT_NE(error_of(t).find("'gk' is missing"), std::string::npos);
}

TEST(BadInput, CuSeqlensRules) {
  auto with_cu = [](std::vector<double> cu) {
    auto t = valid_tensors();
    t["cu_seqlens"] = Tensor{DType::I64, {std::int64_t(cu.size())}, cu};
    t.erase("h0"), t.erase("dht");
    return error_of(t);
  };
  EXPECT_EQ(with_cu({0, 2, 6}), "");
  EXPECT_NE(with_cu({1, 6}).find("start at 0"), std::string::npos);
  EXPECT_NE(with_cu({0, 4, 3, 6}).find("must not decrease"), std::string::npos);
  EXPECT_NE(with_cu({0, 2, 5}).find("end at T = 6"), std::string::npos);
  auto t = valid_tensors();
  t["cu_seqlens"] = Tensor{DType::I64, {3}, {0, 2, 6}};
  EXPECT_NE(error_of(t).find("'h0' has shape [1, 2, 3, 4], expected [2, 2, 3, 4]"), std::string::npos) << error_of(t);
}

TEST(BadInput, CuSeqlensNeedsBatchOne) {
  CaseSpec spec;
  spec.shape = {2, 6, 1, 2, 2};
  auto t = problem_to_tensors(generate_case(spec));
  t["cu_seqlens"] = Tensor{DType::I64, {2}, {0, 6}};
  EXPECT_NE(error_of(t).find("needs B == 1"), std::string::npos) << error_of(t);
}

TEST(BadInput, NonFiniteInputsAreReportedNotComputed) {
  auto t = valid_tensors();
  t["v"].values[5] = std::numeric_limits<double>::quiet_NaN();
  t["gk"].values[0] = -std::numeric_limits<double>::infinity();
  const auto message = error_of(t);
  EXPECT_TRUE(message.find("'v' has 1 non-finite") != std::string::npos ||
              message.find("'gk' has 1 non-finite") != std::string::npos)
      << message;
}

TEST(BadInput, DhtWithoutDo) {
  auto t = valid_tensors();
  t.erase("do");
  EXPECT_NE(error_of(t).find("dht is given without do"), std::string::npos);
}

}  // namespace
}  // namespace dplr
