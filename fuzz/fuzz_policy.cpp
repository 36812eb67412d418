// libFuzzer target for the tolerance policy parsers: the input up to its first NUL byte is a --tol string
// (TolerancePolicy::add_overrides), the rest a JSON policy file's text (add_json). Any InputError is a
// correct answer (so is a JSON syntax error); a crash, a sanitizer report or another exception is a bug, and
// so is an accepted policy whose resolved limits are negative or NaN.
#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_common.hpp"
#include "verify/tolerance.hpp"

namespace {

void expect_sane(const dplr::TolerancePolicy& policy) {
  for (const char* tensor : {"o", "ht", "dgk", "A_qk", "x"})
    for (dplr::DType dtype : {dplr::DType::BF16, dplr::DType::F16, dplr::DType::F32, dplr::DType::F64}) {
      const dplr::Tolerance t = policy.resolve(tensor, dtype);
      for (const auto& limit : {t.limits.floor_ratio, t.limits.rel_rmse, t.limits.max_ulp, t.limits.max_rel,
                                t.limits.max_abs})
        if (limit && (std::isnan(*limit) || *limit < 0)) dplr::fuzz::bug("a negative or NaN limit was accepted");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string_view overrides = input.substr(0, nul);
  const std::string_view json_text = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  dplr::TolerancePolicy policy = dplr::TolerancePolicy::preset("default");
  try {
    policy.add_overrides(overrides);
  } catch (const dplr::InputError&) {
  }
  expect_sane(policy);
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    policy.add_json(j, "fuzz.json");
  } catch (const dplr::InputError&) {
    return 0;
  }
  expect_sane(policy);
  return 0;
}
