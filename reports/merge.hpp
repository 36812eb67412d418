// `dplr report merge`: the reports of the N shards of one sweep (`dplr check --shard I/N`, verify/shard.hpp)
// combined into the report of the whole sweep, as if one process had run it.
//
// The merged report: the shards' cases concatenated in sweep order (by sweep_index; within a position in
// the order the shard wrote them); duration_seconds the sum of the shards' (the work done, not the wall
// time); start_time the earliest; host the first shard's, with gpu the distinct GPUs of all shards; errors
// that stopped a shard carried over with the shard's file named; baseline comparisons combined (regressions
// and new cases joined, missing cases those no shard has, counts summed); verdict and exit code recomputed:
// the worst. `merged_from` lists every shard (path, sha256, shard, host, time, cases, verdict); sweep.shard
// becomes 0/1.
//
// Refused (InputError naming the file and the field, exit 2): a file that is not a dplr-report.v2; a report
// that is not a sweep's (sweep null); reports that differ in tool (name, version, git_revision), command,
// policy (preset, floor_basis, sources), sweep (name, every parameter, cases_total, shard count), or
// baseline path; two reports of the same shard; shards missing from 0..N-1; a case whose sweep_index is not
// the shard's or is held by two reports; baseline comparisons in some shards and not others.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dplr {

struct ShardReport {
  std::filesystem::path path;
  nlohmann::json report;
  std::string sha256;
};

// Reads a shard report (JSON, schema name); InputError naming the file.
ShardReport read_shard_report(const std::filesystem::path& path);

// The merged report; `command_line` is the merge's argv.
nlohmann::json merge_reports(const std::vector<ShardReport>& shards, const std::vector<std::string>& command_line);

// Writes a report's JSON as write_report does (indented, folder created); InputError when it cannot.
void write_report_json(const std::filesystem::path& path, const nlohmann::json& report);

}  // namespace dplr
