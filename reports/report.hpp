// One run's report: what was run, where, on which inputs, and how far every tensor is from the exact (or
// expected) answer. Written as JSON that validates against reports/schema/dplr-report.v2.schema.json
// (fields documented in reports/SCHEMA.md), printed as a short table with fmt, and as JUnit XML for CI.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "verify/compare.hpp"

namespace dplr {

inline constexpr int kReportSchemaVersion = 2;
inline constexpr std::string_view kReportSchemaId = "dplr-report.v2";

struct ToolInfo {
  std::string name = "dplr-verify";
  std::string version;       // the CMake project version
  std::string git_revision;  // `git rev-parse --short HEAD` at configure time, "unknown" outside a checkout
  static ToolInfo current();
};

struct HostInfo {
  std::string hostname;
  std::string cpu_model;  // /proc/cpuinfo's "model name", "unknown" where absent
  int cpu_cores = 0;      // hardware threads
  std::optional<std::string> gpu;  // e.g. "NVIDIA H100 80GB HBM3 (sm_90)"; empty when none was used
  static HostInfo current(std::optional<std::string> gpu = std::nullopt);
};

struct CaseShape {
  std::int64_t B = 0, T = 0, H = 0, K = 0, V = 0, N = 0;
};

struct CaseOptions {
  std::optional<double> scale;  // the scale used; empty when unknown (a diff of two files)
  bool reverse = false;
  bool cu_seqlens = false;  // varlen packing present
  bool h0 = false;
  bool dht = false;
  bool backward = false;    // do present: gradients were computed and compared
};

struct GeneratorSource {
  std::string name;
  std::uint64_t seed = 0;
};

struct FileSource {
  std::string role;    // "case" (verify), "actual" / "expected" (diff), "stages", "policy", ...
  std::string path;
  std::string sha256;  // lowercase hex of the file's bytes
};

struct CaseSource {
  std::optional<GeneratorSource> generator;
  std::vector<FileSource> files;
};

struct ReferenceInfo {
  std::string precision;                          // Precision::name(): "double", "dd", "qd", "mpfr256", "ball256"
  int significand_bits = 0;
  std::optional<std::string> estimated_against;   // the other run of the estimate (higher: repeat; lower: extrapolated)
  std::optional<std::string> estimate_method;     // "repeat" or "extrapolated" (reference/reference.hpp); unset: none
  std::map<std::string, double> estimated_bits;   // per tensor, the agreement of the two runs; empty when not estimated
  std::map<std::string, double> proven_bits;      // per tensor, from a rigorous (ball) run's radii; empty otherwise
  double seconds = 0.0;
};

struct StageSection {
  std::vector<StageResult> results;                  // pipeline order
  std::optional<std::string> first_diverging_stage;  // first_diverging_stage(results)
};

struct CaseResult {
  std::string id;
  std::optional<CaseShape> shape;          // empty where the tensors are not a DPLR case (some diffs)
  std::map<std::string, DType> dtypes;     // storage dtype of every tensor of the case
  std::optional<DType> working_dtype;      // compare.hpp: the inputs' precision
  std::optional<CaseOptions> options;
  CaseSource source;
  std::string baseline = "exact";          // "exact" (verify, check) or "file" (diff)
  std::optional<ReferenceInfo> reference;  // empty for diff
  ComparisonResult comparison;
  std::optional<StageSection> stages;
  std::vector<std::string> notes;          // e.g. "gk > 0 in 12 elements: growth, outside the intended domain"
  // The kernel refused the case or failed while running it (the message); the case's verdict is then error,
  // and a sweep goes on with the next case.
  std::optional<std::string> error;
  // Gates outside the tensor comparisons that did not hold (e.g. "the reference is certified to 70 bits,
  // below the 80 required"); any makes the case fail.
  std::vector<std::string> failures;
  // The case's position in its sweep's case list (verify/shard.hpp partitions by it; `dplr report merge`
  // orders by it); empty outside a sweep. The cases one sweep position produces share it.
  std::optional<std::int64_t> sweep_index;

  // error when `error` is set, fail when `failures` is not empty, else the worst of the tensors and stages
  Verdict verdict() const;
};

// One gated figure that grew past its margin against a stored report (verify/baseline.hpp).
struct Regression {
  std::string case_id, tensor, stage;  // stage empty for a case's own tensors
  std::string figure;                  // "floor_ratio", "rel_rmse", "max_elem", "local_ratio", "misrounded"
  double baseline = 0.0, current = 0.0, allowed = 0.0;
};

struct BaselineComparison {
  std::string path;                         // the stored report
  std::int64_t cases_compared = 0, figures_compared = 0;
  std::vector<Regression> regressions;      // empty: no regression
  std::vector<std::string> missing_cases;   // in the baseline, not in this run
  std::vector<std::string> new_cases;       // in this run, not in the baseline
};

// What identifies a sweep (`dplr check`, `dplr check --property`): shards merge only when all of it but the
// shard agrees.
struct SweepInfo {
  std::string name;              // "check" or "property"
  nlohmann::json parameters;     // an object: the options that choose the case list (quick, cpu_only, seed, ...)
  std::int64_t cases_total = 0;  // positions in the whole (unsharded) case list
  int shard_index = 0, shard_count = 1;
};

// One shard a merged report combines (`dplr report merge`).
struct MergedShard {
  std::string path, sha256;
  int shard_index = 0, shard_count = 1;
  HostInfo host;
  std::string start_time;
  double duration_seconds = 0.0;
  std::int64_t cases = 0;
  Verdict verdict = Verdict::Pass;
  int exit_code = 0;
};

struct Report {
  std::string command;                    // "verify", "diff", "check", "gradcheck", ...
  std::vector<std::string> command_line;  // argv
  ToolInfo tool = ToolInfo::current();
  HostInfo host;
  std::string policy_preset;
  std::vector<std::string> policy_sources;  // TolerancePolicy::sources()
  FloorBasis floor_basis = FloorBasis::Working;
  std::chrono::system_clock::time_point start_time;
  double duration_seconds = 0.0;
  std::vector<CaseResult> cases;
  std::optional<std::string> input_error;     // the InputError that stopped the run (exit code 2)
  std::optional<std::string> internal_error;  // any other exception that stopped the run (exit code 3)
  std::optional<BaselineComparison> baseline;  // --baseline: regressions fail the run
  std::optional<SweepInfo> sweep;              // set by the sweeps; empty for other commands
  std::vector<MergedShard> merged_from;        // `dplr report merge` only

  // error on input_error or internal_error, else the worst case verdict (pass for no cases), fail when a
  // baseline comparison found a regression.
  Verdict verdict() const;
  // 0 pass, 1 fail or error (an accuracy failure: NaN or a kernel's refusal included), 2 input_error,
  // 3 internal_error.
  int exit_code() const;
};

nlohmann::json to_json(const BaselineComparison& baseline);
nlohmann::json to_json(const HostInfo& host);
nlohmann::json to_json(const SweepInfo& sweep);
nlohmann::json to_json(const MergedShard& shard);

nlohmann::json to_json(const TensorMetrics& metrics);
nlohmann::json to_json(const TensorResult& result);
nlohmann::json to_json(const CaseResult& result);
nlohmann::json to_json(const Report& report);
// Writes to_json(report) to `path` (creating its folder), indented or, for stored baselines, compact (a
// quarter of the size); throws InputError when it cannot.
void write_report(const std::filesystem::path& path, const Report& report, bool compact = false);

// The terminal table of one case: tensor, dtype (storage/judged), rel RMSE, floor ratio, max ulp, max abs err
// @ index, verdict; then the reason of every tensor that did not pass.
std::string format_table(const CaseResult& result);

// JUnit XML: one <testsuite> per case, one <testcase> per case x tensor (and per stage tensor), a <failure>
// or <error> carrying the numbers.
std::string junit_xml(const Report& report);
std::string junit_xml(const nlohmann::json& report);  // of to_json(report), or a report read back
void write_junit(const std::filesystem::path& path, const Report& report);
void write_junit(const std::filesystem::path& path, const nlohmann::json& report);

// "2025-06-01T12:00:00.123Z"
std::string iso8601_utc(std::chrono::system_clock::time_point time);

}  // namespace dplr
