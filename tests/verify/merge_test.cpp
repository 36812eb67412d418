// reports/merge.hpp: shard reports combined in sweep order with the worst verdict, and every mismatch refused
// naming the file and the field. (The CLI scenario cli.scale.* runs it on real shards.)
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "reports/merge.hpp"
#include "reports/report.hpp"

namespace dplr {
namespace {

using nlohmann::json;

// Shard `index` of `count` over `total` positions, one case per position it holds.
ShardReport shard(int index, int count, int total, Verdict verdict_of_first = Verdict::Pass) {
  Report r;
  r.command = "check";
  r.policy_preset = "strict";
  r.policy_sources = {"preset strict"};
  r.host.hostname = "node" + std::to_string(index);
  r.duration_seconds = 1.5 + index;
  r.sweep = SweepInfo{"check", {{"quick", true}, {"seed", nullptr}}, total, index, count};
  for (int position = index; position < total; position += count) {
    CaseResult c;
    c.id = "case " + std::to_string(position);
    c.sweep_index = position;
    if (position == index && verdict_of_first == Verdict::Fail) c.failures.push_back("planted");
    r.cases.push_back(c);
  }
  return {"shard-" + std::to_string(index) + ".json", to_json(r), std::string(64, 'a')};
}

std::string refusal(const std::vector<ShardReport>& shards) {
  try {
    merge_reports(shards, {"dplr", "report", "merge"});
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Merge, CasesInSweepOrderDurationsSummedWorstVerdict) {
  const json merged = merge_reports({shard(2, 3, 8), shard(0, 3, 8), shard(1, 3, 8, Verdict::Fail)}, {"dplr"});
  ASSERT_EQ(merged["cases"].size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(merged["cases"][i]["sweep_index"], i);
  EXPECT_DOUBLE_EQ(merged["duration_seconds"].get<double>(), 1.5 + 2.5 + 3.5);
  EXPECT_EQ(merged["verdict"], "fail");
  EXPECT_EQ(merged["exit_code"], 1);
  EXPECT_EQ(merged["sweep"]["shard"], (json{{"index", 0}, {"count", 1}}));
  ASSERT_EQ(merged["merged_from"].size(), 3u);
  EXPECT_EQ(merged["merged_from"][1]["host"]["hostname"], "node1");
  EXPECT_EQ(merge_reports({shard(0, 2, 4), shard(1, 2, 4)}, {"dplr"})["verdict"], "pass");
}

TEST(Merge, RefusesShardsThatDoNotBelongTogether) {
  auto edited = [](auto edit) {
    ShardReport s = shard(1, 2, 4);
    edit(s.report);
    return std::vector<ShardReport>{shard(0, 2, 4), s};
  };
  const std::vector<std::pair<std::vector<ShardReport>, std::string>> cases = {
      {edited([](json& r) { r["tool"]["version"] = "9.9.9"; }), "shard-1.json: field 'tool.version'"},
      {edited([](json& r) { r["policy"]["preset"] = "default"; }), "shard-1.json: field 'policy.preset'"},
      {edited([](json& r) { r["sweep"]["parameters"]["seed"] = 5; }), "field 'sweep.parameters.seed'"},
      {edited([](json& r) { r["sweep"]["parameters"]["extra"] = 1; }), "field 'sweep.parameters'"},
      {edited([](json& r) { r["sweep"]["cases_total"] = 6; }), "field 'sweep.cases_total'"},
      {edited([](json& r) { r["cases"][0]["sweep_index"] = 2; }), "field 'sweep_index' is 2"},
      {edited([](json& r) { r["sweep"] = nullptr; }), "field 'sweep' is null"},
      {edited([](json& r) { r.erase("tool"); }), "field 'tool.name' is missing"},
      {{shard(0, 2, 4), shard(0, 2, 4)}, "both shard 0/2"},
      {{shard(1, 3, 6)}, "shards [0, 2] of 3 are missing"},
      {{}, "no reports given"},
  };
  for (const auto& [shards, expected] : cases) {
    const std::string message = refusal(shards);
    EXPECT_NE(message.find(expected), std::string::npos) << "expected '" << expected << "' in '" << message << "'";
  }
}

TEST(Merge, ShardErrorsAndBaselinesCarryOver) {
  ShardReport broken = shard(1, 2, 4);
  broken.report["input_error"] = "case.safetensors: bad";
  broken.report["verdict"] = "error";
  broken.report["exit_code"] = 2;
  const json merged = merge_reports({shard(0, 2, 4), broken}, {"dplr"});
  EXPECT_EQ(merged["exit_code"], 2);
  EXPECT_NE(merged["input_error"].get<std::string>().find("shard 1/2 (shard-1.json): case.safetensors: bad"),
            std::string::npos);

  // One stored baseline: a case missing from the whole sweep is one every shard misses.
  auto with_baseline = [](ShardReport s, std::vector<std::string> missing, int regressions) {
    BaselineComparison b;
    b.path = "base.json";
    b.cases_compared = 2;
    b.missing_cases = std::move(missing);
    for (int i = 0; i < regressions; ++i) b.regressions.push_back({"case 0", "o", "", "floor_ratio", 1, 2, 1.3});
    s.report["baseline"] = to_json(b);
    return s;
  };
  const json b = merge_reports({with_baseline(shard(0, 2, 4), {"gone", "case 1"}, 1),
                                with_baseline(shard(1, 2, 4), {"gone", "case 0"}, 0)},
                               {"dplr"});
  EXPECT_EQ(b["baseline"]["missing_cases"], (json{"gone"}));
  EXPECT_EQ(b["baseline"]["cases_compared"], 4);
  EXPECT_EQ(b["verdict"], "fail");
  EXPECT_NE(refusal({with_baseline(shard(0, 2, 4), {}, 0), shard(1, 2, 4)}).find("field 'baseline' is null"),
            std::string::npos);
}

}  // namespace
}  // namespace dplr
