// Tolerance policies: which error a tensor may have before it fails, per dtype and per tensor name.
//
// Limits. A tolerance sets any of: floor_ratio (the default unit), rel_rmse, max_ulp, max_rel, max_abs,
// max_elem (worst element in units of u), local_ratio (worst block of tokens of one head, in floors),
// misrounded (fraction of 16-bit elements not correctly rounded); every limit it sets must hold
// (value <= limit). The presets gate every tensor in aggregate (floor_ratio or rel_rmse), elementwise
// (max_elem) and locally (local_ratio), so one bad element, head or chunk fails although the whole-tensor
// RMSE passes. A tensor is judged at its *judged dtype* (compare.hpp): under "default" and "report-only"
// the lower precision of its storage dtype and the case's working dtype, so fla's fp32-stored ht, dgk and
// dh0 of a bf16 run are held to the bf16 floor; under "strict" its storage dtype (FloorBasis). A policy's
// dtype selectors match the judged dtype.
//
// Verdicts. error: NaN in the actual tensor (or in the expected one); fail: an element infinite where the
// expected value is not (or the other infinity), or a limit exceeded; pass otherwise. A tensor whose
// tolerance sets no limit it can evaluate passes with a reason that says "not gated".
//
// Presets (numbers and reasons in tolerance.cpp, summary in reports/SCHEMA.md):
//   "strict"      our own kernels (gpu/), judged at the storage dtype. 16-bit: 1.3x the floor, worst
//                 element 2 u, worst block 2.0 floors, misrounded <= 1% (bf16) / 5% (fp16); gradients
//                 2.0x, 4 u, 3.0 (provisional). fp32: 32 floors (ht 16, h 8, gi/ge 4), 512 u, worst block
//                 64; fp32 gradients rel RMSE 1e-6, the backward's stage tensors (dA_*, dh, dv_new, dw) 2e-6,
//                 worst block 256.
//                 fp64: rel RMSE 1e-12, 8192 u.
//   "default"     foreign kernels, judged at the working dtype: fla's recordings pass with ~1.6x margin.
//                 16-bit o, ht 3.0x, 6 u, 4.0; gradients 6.0x, 32 u, 12.0; other names 4.0x, 8 u, 6.0;
//                 fp32 rel RMSE 1e-5, 2048 u, 1024 floors; fp64 1e-10, 2^20 u.
//   "report-only" no limits: metrics are reported, only NaN and infinities decide.
//
// Overrides, later ones winning over earlier ones (the preset first, then policy files and command-line
// strings in the order added). Within one source the most specific matching rule wins:
// DTYPE:TENSOR > TENSOR > DTYPE:* > *. The winning rule's limits replace the lower ones whole (they do not
// merge), so `dgk:rel_rmse=1e-2` judges dgk by rel RMSE alone; entries of one source with the same
// selector do merge (`o=1.5,o:max_ulp=64` sets both).
//
// Command-line syntax: comma-separated SELECTOR[:UNIT]=VALUE, where
//   SELECTOR = TENSOR | DTYPE | DTYPE:TENSOR | DTYPE:* | *   (TENSOR a name such as o, dgk, A_qk)
//   DTYPE    = bf16 | f16 | fp16 | f32 | fp32 | f64 | fp64 | i32 | i64 (any case; also BF16, F32...)
//   UNIT     = floor | floor_ratio | rel_rmse | max_ulp | ulp | max_rel | max_abs | elem | max_elem |
//              local | local_ratio | misrounded                                       (default floor_ratio)
//   VALUE    = a number >= 0, or "off" (no limit for the selector)
// e.g. `o=1.5,dgk:rel_rmse=1e-2,bf16:*=2.0,bf16:dgk:max_ulp=512,dh0=off`.
//
// Policy file (JSON):
//   {"dplr_policy": 1, "description": "...optional...", "floor_basis": "working" (optional, or "storage"),
//    "rules": [{"tensor": "o", "dtype": "BF16", "floor_ratio": 1.5},
//              {"tensor": "dgk", "rel_rmse": 1e-2},
//              {"dtype": "BF16", "floor_ratio": 2.0},
//              {"tensor": "dh0", "off": true}]}
// "tensor" and "dtype" default to "*"; a rule sets at least one limit or "off": true. Unknown keys are errors.
#pragma once
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.hpp"
#include "verify/metrics.hpp"

namespace dplr {

enum class Verdict { Pass, Fail, Error };
std::string_view verdict_name(Verdict verdict);  // "pass", "fail", "error"
Verdict worst_verdict(Verdict a, Verdict b);      // error > fail > pass

struct ToleranceLimits {
  // Default member initializers keep designated initializers ({.floor_ratio = 1.3}) free of -Wextra warnings.
  std::optional<double> floor_ratio{}, rel_rmse{}, max_ulp{}, max_rel{}, max_abs{};
  std::optional<double> max_elem{};     // worst elementwise error, in units of the judged dtype's u (metrics.hpp)
  std::optional<double> local_ratio{};  // worst block's local floor ratio (metrics.hpp)
  std::optional<double> misrounded{};   // fraction of 16-bit elements that are not the correctly rounded value
  bool any() const {
    return floor_ratio || rel_rmse || max_ulp || max_rel || max_abs || max_elem || local_ratio || misrounded;
  }
};

// Which dtype's floor a tensor is judged against (compare.hpp). Working: the lower precision of its storage
// dtype and the case's working dtype, for foreign kernels whose fp32-stored ht or dgk of a bf16 run came
// from bf16 products. Storage: the tensor's own dtype, for kernels that claim it (ours: an fp32 ht of a bf16
// run is held to the fp32 floor, so a 20,000x regression of it cannot hide under the bf16 floor).
enum class FloorBasis { Working, Storage };
std::string_view floor_basis_name(FloorBasis basis);  // "working", "storage"


struct Tolerance {
  ToleranceLimits limits;
  std::string rule;  // where the limits came from: "preset default: BF16:o", "command line: dgk"
};

struct Judgement {
  Verdict verdict = Verdict::Pass;
  std::string reason;
};

// `expected_name` says what the expected side is in messages ("exact", "B").
Judgement judge(const TensorMetrics& metrics, const Tolerance& tolerance, std::string_view expected_name = "exact");

class TolerancePolicy {
 public:
  // Throws InputError listing the known names.
  static TolerancePolicy preset(std::string_view name);
  static std::span<const std::string_view> preset_names();

  // Adds a layer from a command-line string (syntax above); throws InputError naming the bad entry.
  void add_overrides(std::string_view text, std::string_view origin = "command line");
  // Adds a layer from a JSON policy file; throws InputError naming the file and the bad rule.
  void add_file(const std::filesystem::path& path);
  void add_json(const nlohmann::json& policy, std::string_view origin);

  Tolerance resolve(std::string_view tensor, DType judged_as) const;

  const std::string& preset_name() const { return preset_name_; }
  FloorBasis floor_basis() const { return floor_basis_; }
  // Every layer in order: "preset default", "file policy.json", "command line: o=1.5".
  std::vector<std::string> sources() const;

  // The tensor names the command-line overrides (add_overrides) name, other than "*": a run checks that each
  // named a tensor it judged, so a misspelt `--tol dqq=2` is refused instead of silently gating nothing.
  std::vector<std::string> override_tensor_names() const;

 private:
  struct Rule {
    std::optional<DType> dtype;  // empty: any
    std::string tensor;          // "*": any
    ToleranceLimits limits;
  };
  struct Layer {
    std::string origin;       // short, for Tolerance::rule: "preset default", "command line"
    std::string description;  // for sources(): the origin with the override text
    std::vector<Rule> rules;
    bool overrides = false;   // from add_overrides
  };
  void add_rule(Layer& layer, Rule rule);

  std::string preset_name_;
  FloorBasis floor_basis_ = FloorBasis::Working;
  std::vector<Layer> layers_;
};

// Parses a dtype as selectors spell it ("bf16", "fp32", "F16", ...); empty when unknown.
std::optional<DType> parse_dtype_selector(std::string_view text);

}  // namespace dplr
