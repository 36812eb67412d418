// verify/gradcheck.hpp: our analytic backward passes its own finite-difference check; recorded gradients pass when
// they are the exact ones rounded to double and fail when one of them is off by 10%; a recording without a
// gradient skips it; a problem without `do` is refused. The pieces of `gradcheck --gpu` that need no device: the
// comparison with the exact backward (exact gradients rounded to fp32 pass the strict policy, a 1% error in dgk
// fails it), the kernel names, and the refusal of a kernel not built.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/reference.hpp"
#include "verify/gradcheck.hpp"

namespace dplr {
namespace {

DplrProblem small_case() {
  CaseSpec spec;
  spec.shape = {1, 6, 1, 3, 2};
  spec.seed = 3;
  return generate_case(spec);
}

GradcheckOptions fast_options() {
  GradcheckOptions o;
  o.precision = Precision{Arithmetic::DoubleDouble, 0};
  o.directions = 2;
  o.threads = 1;
  return o;
}

TEST(Gradcheck, OurBackwardPassesDirectionalAndPerElement) {
  const DplrProblem p = small_case();
  GradcheckOptions o = fast_options();
  const GradcheckResult directional = check_gradients(p, o);
  EXPECT_TRUE(directional.all_pass());
  EXPECT_GE(directional.gradients.size(), 6u);  // dq, dk, dv, da, db, dgk (and dh0 with h0)
  for (const auto& g : directional.gradients) EXPECT_LE(g.error, directional.tolerance) << g.gradient;
  o.per_element = true;
  const GradcheckResult per_element = check_gradients(p, o);
  EXPECT_TRUE(per_element.all_pass());
  for (const auto& g : per_element.gradients) EXPECT_GT(g.checks, 1) << g.gradient;
}

TEST(Gradcheck, RecordedGradientsPassWhenExactAndFailWhenOff) {
  const DplrProblem p = small_case();
  ReferenceOptions ro;
  ro.precision = Precision{Arithmetic::DoubleDouble, 0};
  const ReferenceResult exact = run_reference(p, ro);
  TensorMap recorded;
  for (const auto& [name, t] : exact.tensors)
    if (name.size() > 1 && name[0] == 'd') recorded[name] = Tensor{DType::F64, t.shape, t.rounded()};
  const GradcheckOptions o = fast_options();
  EXPECT_TRUE(check_gradients(p, o, &recorded).all_pass());

  for (double& x : recorded.at("dk").values) x *= 1.1;
  recorded.erase("dv");
  const GradcheckResult r = check_gradients(p, o, &recorded);
  EXPECT_FALSE(r.all_pass());
  for (const auto& g : r.gradients) {
    if (g.gradient == "dk") EXPECT_FALSE(g.pass) << "dk off by 10%: error " << g.error;
    else if (g.gradient == "dv") EXPECT_FALSE(g.in_recording) << "dv is not in the recording";
    else EXPECT_TRUE(g.pass) << g.gradient << ": error " << g.error;
  }
}

TEST(Gradcheck, NeedsTheUpstreamGradient) {
  DplrProblem p = small_case();
  p.grad_o.reset();
  EXPECT_THROW(check_gradients(p, fast_options()), InputError);
}

TEST(Gradcheck, GpuGradientsAgainstTheExactBackward) {
  DplrProblem p = small_case();
  ReferenceOptions ro;
  ro.precision = Precision{Arithmetic::DoubleDouble, 0};
  const ReferenceResult exact = run_reference(p, ro);
  TensorMap gradients;  // what an fp32 kernel would return at best: the exact gradients rounded to fp32
  for (auto name : kGradientNames) {
    const Tensor t = exact.tensors.at(std::string(name)).to_tensor(DType::F32);
    gradients[std::string(name)] = t;
  }
  const TolerancePolicy strict = TolerancePolicy::preset("strict");
  const Precision dd{Arithmetic::DoubleDouble, 0};
  const ComparisonResult ok = compare_with_exact_backward(p, gradients, strict, dd, 1);
  EXPECT_EQ(ok.verdict, Verdict::Pass);
  EXPECT_EQ(ok.tensors.size(), gradients.size()) << "every gradient judged";
  for (double& x : gradients.at("dgk").values) x *= 1.01;
  const ComparisonResult off = compare_with_exact_backward(p, gradients, strict, dd, 1);
  EXPECT_EQ(off.verdict, Verdict::Fail);
  for (const auto& t : off.tensors) EXPECT_EQ(t.verdict == Verdict::Pass, t.name != "dgk") << t.name << ": " << t.reason;
}

TEST(Gradcheck, GpuKernelsByName) {
  const std::vector<std::string> names = gpu_backward_kernel_names();
  ASSERT_GE(names.size(), 2u);  // recurrent, and chunk (built or planned)
  EXPECT_EQ(names.front(), "recurrent");
  EXPECT_TRUE(gpu_backward_kernel_built("recurrent"));
  for (const std::string& name : names) {
    if (gpu_backward_kernel_built(name)) {
      EXPECT_NO_THROW(require_gpu_backward_kernel(name));
      continue;
    }
    try {  // a planned kernel (the chunk backward until it lands) is refused, saying so
      require_gpu_backward_kernel(name);
      ADD_FAILURE() << "the " << name << " backward is not built, yet it was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("not built yet"), std::string::npos) << e.what();
    }
    EXPECT_THROW(run_gpu_backward(small_case(), name, 64), InputError);
  }
  EXPECT_THROW(require_gpu_backward_kernel("bogus"), InputError);
  DplrProblem p = small_case();
  p.q.dtype = DType::F32;
  EXPECT_EQ(gpu_gradient_tolerance(p), kGpuFp32GradientTolerance);
  p.q.dtype = DType::BF16;
  EXPECT_EQ(gpu_gradient_tolerance(p), kRecordedGradientTolerance);
}

}  // namespace
}  // namespace dplr
