// The names and layouts kernels are recorded in, mapped to the contract (shared spec DPLR.md) before a
// case is judged, and the judged tensors named back, so a report speaks the file's names.
//
//   --map FILE=CONTRACT  any tensor under another name (`--map y=o --map state=ht`), as `dplr diff --map`.
//   --layout head-first  q, k, v, a, b, gk, o, do and their gradients as [B, H, T, D]: transposed to the
//                        contract's [B, T, H, D] on reading; the report's indices are in [B, T, H, D].
//   --convention rwkv7   RWKV-7's names: r -> q, w -> gk, y (or o) -> o, dy (or do) -> do, dr -> dq,
//                        dw -> dgk; k, v, a, b, dk, dv, da, db as they are; scale 1 unless the file says
//                        otherwise. RWKV-7's kernels keep no h0 or ht: the state starts at zero. w is a
//                        decay parametrization (--decay, or the file's metadata `decay`):
//                          clampw  gk = -exp(-0.5) sigmoid(w)   (BlinkDL's current kernels)
//                          exp     gk = -exp(w)                 (the earlier wkv7 op)
//                          log     gk = w                       (plain log-decay)
//                        gk = g(w) is formed in double-double and rounded to double once (relative error
//                        2^-53, below every floor a stored kernel output has down to F64's 1e-12 gate);
//                        the exact dw is the exact dgk times g'(w) in double-double (dL/dw = dL/dgk g'(w)).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "reference/exact_tensor.hpp"
#include "reports/report.hpp"

namespace dplr {

enum class DecayParametrization { ClampW, Exp, Log };
enum class TokenLayout { BatchFirst, HeadFirst };

struct TensorConvention {
  std::string name = "contract";                         // "contract" or "rwkv7"
  std::optional<DecayParametrization> decay;             // rwkv7: how w becomes gk (else the file's `decay`)
  TokenLayout layout = TokenLayout::BatchFirst;
  std::vector<std::pair<std::string, std::string>> map;  // file name -> contract name, applied first
  bool is_identity() const { return name == "contract" && layout == TokenLayout::BatchFirst && map.empty(); }
};

TensorConvention parse_convention(std::string_view name);       // "contract" | "rwkv7"; InputError otherwise
DecayParametrization parse_decay(std::string_view name);        // "clampw" | "exp" | "log"
TokenLayout parse_layout(std::string_view name);                // "batch-first" | "head-first"
std::pair<std::string, std::string> parse_map(std::string_view text);  // "FILE=CONTRACT"

// A file's tensors under the contract's names and layout, and what it takes to name the results back.
struct ContractView {
  TensorFile file;                                   // contract names, [B, T, H, D]
  std::map<std::string, std::string> file_name_of;   // contract name -> the file's name, where they differ
  std::optional<DecayParametrization> decay;         // set when gk came from w
  Tensor w;                                          // the file's w (decay parametrization input)
  std::vector<std::string> notes;                    // what was mapped, for the report's notes
};

// InputError, naming `origin` and the tensor, on a --map of an absent tensor, two names for one contract
// tensor, a head-first tensor that is not 4-d, rwkv7 without a decay parametrization.
// The file is taken by value: a caller done with it moves it in, and its tensors are moved, not copied.
ContractView to_contract(TensorFile file, const TensorConvention& convention, std::string_view origin);

// The exact dgk as the exact gradient of the file's w (dL/dw = dL/dgk g'(w)), when gk came from w.
void exact_to_file_convention(ExactTensorMap& exact, const ContractView& view);

// Names the case's tensors, dtypes, not-compared lists and certified bits as the file named them.
void name_as_file(CaseResult& result, const ContractView& view);

}  // namespace dplr
