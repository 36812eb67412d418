// A kernel author's GoogleTest against the installed dplr-verify package: the exact reference of a
// generated case, a "kernel" result (the exact answer rounded to bf16, then one element broken), and the
// verdict `dplr verify` would give, through the headers and targets find_package(dplr_verify) provides.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "generators/distributions.hpp"
#include "io/tensor_io.hpp"
#include "reference/reference.hpp"
#include "verify/verify_case.hpp"

namespace {

dplr::CaseSpec small_case() {
  dplr::CaseSpec spec;
  spec.shape = {1, 32, 2, 8, 8};
  spec.dtype = dplr::DType::BF16;
  spec.seed = 7;
  return spec;
}

// The case's inputs plus the exact outputs and gradients rounded to bf16: what a perfect kernel stores.
dplr::TensorFile perfect_bf16_kernel(const dplr::DplrProblem& problem, const dplr::ReferenceResult& exact) {
  dplr::TensorFile file;
  file.tensors = dplr::problem_to_tensors(problem);
  for (const auto& [name, tensor] : exact.tensors) file.tensors[name] = tensor.to_tensor(dplr::DType::BF16);
  return file;
}

TEST(InstalledPackage, ExactReferenceIsCertified) {
  const dplr::DplrProblem problem = dplr::generate_case(small_case());
  const auto exact = dplr::run_certified_reference(problem, {.precision = dplr::Precision::parse("dd")});
  EXPECT_EQ(exact.tensors.count("o"), 1u);
  EXPECT_EQ(exact.tensors.count("dgk"), 1u);
  EXPECT_GT(exact.min_estimated_bits(), 90.0);
}

TEST(InstalledPackage, VerdictPassesAPerfectKernelAndFailsABrokenOne) {
  const dplr::DplrProblem problem = dplr::generate_case(small_case());
  const auto exact = dplr::run_reference(problem, {.precision = dplr::Precision::parse("dd")});
  dplr::TensorFile file = perfect_bf16_kernel(problem, exact);
  const auto policy = dplr::TolerancePolicy::preset("strict");
  const dplr::VerifyCaseOptions options{.certify = false};
  EXPECT_EQ(dplr::verify_case(file, policy, options, "perfect").verdict(), dplr::Verdict::Pass);

  auto& o = file.tensors.at("o").values;
  o[100] = dplr::round_to_dtype(o[100] + 1.0, dplr::DType::BF16);
  const dplr::CaseResult broken = dplr::verify_case(file, policy, options, "broken");
  EXPECT_EQ(broken.verdict(), dplr::Verdict::Fail);
  EXPECT_NE(dplr::format_table(broken).find("fail"), std::string::npos);
}

TEST(InstalledPackage, TensorFilesRoundTrip) {
  const dplr::DplrProblem problem = dplr::generate_case(small_case());
  dplr::TensorFile file;
  file.tensors = dplr::problem_to_tensors(problem);
  const auto path = std::filesystem::temp_directory_path() / "dplr_consumer_case.safetensors";
  dplr::write_tensor_file(path, file);
  const dplr::TensorFile back = dplr::read_tensor_file(path);
  std::filesystem::remove(path);
  EXPECT_EQ(back.tensors.at("q").dtype, dplr::DType::BF16);
  EXPECT_EQ(back.tensors.at("q").values, file.tensors.at("q").values);
}

}  // namespace
