// reports/: SHA-256 against FIPS 180-4 vectors, the JSON form, exit codes, the terminal table and JUnit XML.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "core/error.hpp"
#include "reports/build_info.hpp"
#include "reports/report.hpp"
#include "reports/sha256.hpp"
#include "tests/verify/sample_reports.hpp"

namespace dplr {
namespace {

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

const Report& sample(std::string_view name) {
  static const auto samples = testing::sample_reports();
  for (const auto& [n, r] : samples)
    if (n == name) return r;
  throw std::runtime_error("no sample " + std::string(name));
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 56-byte boundary where the length field spills into a second block (Python hashlib).
  const std::pair<std::size_t, const char*> vectors[] = {
      {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
      {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
      {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
      {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
      {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
      {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"},
  };
  for (const auto& [length, digest] : vectors) EXPECT_EQ(sha256_hex(std::string(length, 'x')), digest) << length;
}

TEST(Sha256, TheShaExtensionsEqualThePortableRounds) {
  // Where the CPU has them, Fastest runs the SHA extensions: every length across several blocks, and one
  // megabyte of bytes of every value, digest alike. Without them both objects run the portable rounds.
  std::mt19937 rng(7);
  std::string data(1 << 20, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::printf("SHA extensions: %s\n", Sha256().uses_sha_extensions() ? "used" : "absent on this CPU");
  for (std::size_t length : {std::size_t(0), std::size_t(1), std::size_t(55), std::size_t(56), std::size_t(63),
                             std::size_t(64), std::size_t(65), std::size_t(200), std::size_t(4097), data.size()}) {
    Sha256 fastest, portable(Sha256::Rounds::Portable);
    EXPECT_FALSE(portable.uses_sha_extensions());
    fastest.update(std::string_view(data).substr(0, length));
    portable.update(std::string_view(data).substr(0, length));
    EXPECT_EQ(to_hex(fastest.finish()), to_hex(portable.finish())) << length;
  }
}

TEST(Sha256, StreamingInOddPiecesEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 5000; ++i) data.push_back(static_cast<char>(i * 131 % 256));
  for (std::size_t piece : {1u, 7u, 63u, 64u, 65u, 1000u}) {
    Sha256 hash;
    for (std::size_t at = 0; at < data.size(); at += piece) hash.update(std::string_view(data).substr(at, piece));
    const auto digest = hash.finish();
    EXPECT_EQ(to_hex(digest), sha256_hex(data)) << piece;
  }
  Sha256 reused;
  reused.update("garbage");
  reused.finish();
  reused.reset();
  reused.update("abc");
  const auto digest = reused.finish();
  EXPECT_EQ(to_hex(digest), sha256_hex("abc"));
}

TEST(Sha256, Files) {
  const auto path = std::filesystem::temp_directory_path() / "dplr_verify_sha256_test.bin";
  std::string data(3 * (1 << 20) + 17, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  std::ofstream(path, std::ios::binary) << data;
  EXPECT_EQ(sha256_file(path), sha256_hex(data));
  std::filesystem::remove(path);
  try {
    sha256_file(path);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), path.string())) << e.what();
  }
}

TEST(Report, Iso8601) {
  using namespace std::chrono;
  EXPECT_EQ(iso8601_utc(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(iso8601_utc(system_clock::time_point(milliseconds(1'700'000'000'123))), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(iso8601_utc(system_clock::time_point(milliseconds(-1))), "1969-12-31T23:59:59.999Z");
}

TEST(Report, BuildInfo) {
  EXPECT_FALSE(tool_version().empty());
  EXPECT_TRUE(std::regex_match(std::string(git_revision()), std::regex("[0-9a-f]{4,40}|unknown")))
      << git_revision();
  EXPECT_EQ(ToolInfo::current().git_revision, git_revision());
}

TEST(Report, HostInfo) {
  const auto host = HostInfo::current();
  EXPECT_FALSE(host.hostname.empty());
  EXPECT_FALSE(host.cpu_model.empty());
  EXPECT_GE(host.cpu_cores, 1);
  EXPECT_FALSE(host.gpu.has_value());
  EXPECT_EQ(HostInfo::current("H100").gpu, "H100");
}

TEST(Report, VerdictsAndExitCodes) {
  const auto& full = sample("verify_full");
  EXPECT_EQ(full.verdict(), Verdict::Error);  // a NaN tensor
  EXPECT_EQ(full.exit_code(), 1);
  EXPECT_EQ(to_json(sample("verify_minimal"))["cases"][0]["reference"]["proven_bits"]["o"], 81.5);
  EXPECT_EQ(sample("verify_minimal").verdict(), Verdict::Pass);
  EXPECT_EQ(sample("verify_minimal").exit_code(), 0);
  EXPECT_EQ(sample("diff").verdict(), Verdict::Fail);
  EXPECT_EQ(sample("diff").exit_code(), 1);
  EXPECT_EQ(sample("input_error").exit_code(), 2);
  EXPECT_EQ(sample("input_error").verdict(), Verdict::Error);
  EXPECT_EQ(sample("no_cases").exit_code(), 0);
  EXPECT_EQ(sample("internal_error").exit_code(), 3);
  EXPECT_EQ(sample("internal_error").verdict(), Verdict::Error);
  EXPECT_EQ(sample("check_baseline").exit_code(), 1);  // a failed gate and a regression
  EXPECT_EQ(sample("check_baseline").cases[0].verdict(), Verdict::Fail);
  EXPECT_EQ(full.cases[2].verdict(), Verdict::Error);  // the kernel refused the case

  const auto& stages = full.cases[0].stages.value();
  EXPECT_EQ(stages.first_diverging_stage, "h");
  EXPECT_EQ(full.cases[0].verdict(), Verdict::Error);
}

TEST(Report, JsonCarriesEverything) {
  const auto j = to_json(sample("verify_full"));
  EXPECT_EQ(j["schema"], "dplr-report.v2");
  EXPECT_EQ(j["schema_version"], kReportSchemaVersion);
  EXPECT_EQ(j["start_time"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["host"]["gpu"], "NVIDIA H100 80GB HBM3 (sm_90)");
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["verdict"], "error");
  const auto& c = j["cases"][0];
  EXPECT_EQ(c["source"]["generator"]["seed"], 11);
  EXPECT_EQ(c["reference"]["estimated_bits"]["dq"], 97.25);
  EXPECT_TRUE(c["reference"]["proven_bits"].empty());  // not a rigorous run
  EXPECT_FALSE(c["reference"].contains("certified_bits"));  // v1's name, renamed in v2
  EXPECT_EQ(c["dtypes"]["ht"], "F32");
  EXPECT_EQ(c["working_dtype"], "BF16");
  std::vector<std::string> names;
  for (const auto& t : c["tensors"]) names.push_back(t["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"o", "ht", "dq", "dgk", "dh0"}));
  EXPECT_EQ(c["not_compared"]["only_in_expected"], nlohmann::json::array({"db"}));
  const auto& ht = c["tensors"][1];
  EXPECT_EQ(ht["judged_as"], "BF16");
  EXPECT_EQ(ht["metrics"]["ulp"]["dtype"], "F32");
  EXPECT_EQ(ht["metrics"]["floor"]["ratio"], 1.0);
  EXPECT_EQ(ht["metrics"]["histogram"]["counts"].size(), static_cast<std::size_t>(kHistogramBins));
  const auto& dgk = c["tensors"][3];
  EXPECT_EQ(dgk["verdict"], "error");
  EXPECT_EQ(dgk["metrics"]["nonfinite"]["first_actual_nan_index"], nlohmann::json::array({0, 0, 1, 3}));
  const auto& dh0 = c["tensors"][4];
  EXPECT_EQ(dh0["metrics"]["rel_rmse"], "Infinity");  // all-zero exact, one nonzero element
  EXPECT_EQ(dh0["verdict"], "fail");
  EXPECT_EQ(c["stages"]["results"][2]["stage"], "h");
  EXPECT_EQ(c["stages"]["first_diverging_stage"], "h");

  const auto diff = to_json(sample("diff"));
  EXPECT_EQ(diff["cases"][0]["baseline"], "file");
  EXPECT_TRUE(diff["cases"][0]["reference"].is_null());
  EXPECT_FALSE(diff["cases"][0]["tensors"][0]["metrics"]["floor"]["nominal"]);  // B (fp64) is more precise
  EXPECT_TRUE(diff["cases"][0]["tensors"][0]["metrics"]["misrounded_fraction"].is_null());  // B is not exact
  const auto& o = c["tensors"][0]["metrics"];
  EXPECT_EQ(o["locality"]["layout"], "tokens");
  EXPECT_EQ(o["locality"]["block_tokens"], 16);
  EXPECT_EQ(o["locality"]["groups"].size(), 2u);  // one sequence, two heads
  EXPECT_EQ(o["locality"]["grid"].size(), 2u);
  EXPECT_EQ(c["tensors"][1]["metrics"]["locality"]["layout"], "states");
  EXPECT_FALSE(o["max_elem_error"].is_null());
  EXPECT_EQ(j["cases"][2]["error"], "gpu chunk: K = 300 exceeds the largest supported head size 128");
  const auto internal = to_json(sample("internal_error"));
  EXPECT_EQ(internal["internal_error"], "std::bad_alloc");
  EXPECT_EQ(internal["exit_code"], 3);
  EXPECT_EQ(internal["policy"]["floor_basis"], "storage");
  const auto regressed = to_json(sample("check_baseline"));
  EXPECT_EQ(regressed["baseline"]["regressions"][0]["figure"], "floor_ratio");
  EXPECT_EQ(regressed["cases"][0]["failures"].size(), 1u);
  EXPECT_TRUE(diff["cases"][0]["options"]["scale"].is_null());
}

TEST(Report, WriteReportRoundTrips) {
  const auto dir = std::filesystem::temp_directory_path() / "dplr_verify_report_test" / "nested";
  std::filesystem::remove_all(dir.parent_path());
  write_report(dir / "r.json", sample("verify_full"));
  std::ifstream in(dir / "r.json");
  const auto parsed = nlohmann::json::parse(in);
  EXPECT_EQ(parsed, to_json(sample("verify_full")));
  std::filesystem::remove_all(dir.parent_path());
  EXPECT_THROW(write_report("/proc/dplr_cannot_write/r.json", sample("no_cases")), InputError);
}

TEST(Report, NonUtf8TextIsReplacedNotFatal) {
  Report report = sample("no_cases");
  report.command_line.push_back("bad\xff\xfe.safetensors");
  const auto path = std::filesystem::temp_directory_path() / "dplr_verify_non_utf8.json";
  EXPECT_NO_THROW(write_report(path, report));
  std::ifstream in(path);
  nlohmann::json parsed;
  EXPECT_NO_THROW(parsed = nlohmann::json::parse(in));
  EXPECT_EQ(parsed["command_line"].back(), "bad\xef\xbf\xbd\xef\xbf\xbd.safetensors");  // U+FFFD twice
  std::filesystem::remove(path);
}

TEST(Report, TableShowsTheNumbersAndTheReasons) {
  const auto table = format_table(sample("verify_full").cases[0]);
  EXPECT_TRUE(contains(table, "case fla-default-B1-T16-H2-K4-V4-bf16-seed11: ERROR")) << table;
  EXPECT_TRUE(contains(table, "tensor")) << table;
  EXPECT_TRUE(contains(table, "worst elem (u) @ index")) << table;
  EXPECT_TRUE(contains(table, "worst block")) << table;
  EXPECT_TRUE(contains(table, "BF16 (working)")) << table;  // ht: fp32 storage, judged at the bf16 floor
  EXPECT_TRUE(contains(table, "1 NaN")) << table;
  EXPECT_TRUE(contains(table, "first diverging: h")) << table;
  EXPECT_TRUE(contains(table, "h/A_qk")) << table;
  EXPECT_TRUE(contains(table, "dq fail: floor ratio")) << table;
  EXPECT_TRUE(contains(table, "h/A_qk fail: floor ratio 9 > 1.3")) << table;
  EXPECT_TRUE(contains(table, "note: gk > 0")) << table;
  // Rows in contract order, o first.
  EXPECT_LT(table.find("\no "), table.find("\nht "));
  EXPECT_LT(table.find("\nht "), table.find("\ndq "));
  const auto diff = format_table(sample("diff").cases[0]);
  EXPECT_TRUE(contains(diff, "against file B")) << diff;
  EXPECT_TRUE(contains(diff, " - ")) << diff;  // no misrounded fraction in a diff
}

TEST(Report, JunitCountsAndEscapes) {
  const auto xml = junit_xml(sample("verify_full"));
  EXPECT_EQ(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 0), 0u);
  // 5 tensors + 3 stage tensors in case 1, 1 tensor in case 2; dq, dh0 and stage h fail; dgk is an error.
  EXPECT_TRUE(contains(xml, "<testsuites name=\"dplr verify\" tests=\"9\" failures=\"3\" errors=\"1\"")) << xml;
  EXPECT_TRUE(contains(xml, "name=\"stage h/A_qk\"")) << xml;
  EXPECT_TRUE(contains(xml, "<error message=\"1 NaN of 128 elements")) << xml;
  EXPECT_TRUE(contains(xml, "type=\"accuracy\"")) << xml;
  EXPECT_TRUE(contains(xml, "classname=\"dplr.minimal\"")) << xml;

  const auto input = junit_xml(sample("input_error"));
  EXPECT_TRUE(contains(input, "got [4] &lt;&amp;&gt;")) << input;
  EXPECT_FALSE(contains(input, "<&>")) << input;
  EXPECT_TRUE(contains(input, "tests=\"1\" failures=\"0\" errors=\"1\"")) << input;

  // Every '<' opens a tag and every '&' starts an entity: a cheap well-formedness check (the full parse
  // is validate_reports.py's).
  for (const auto* text : {&xml, &input}) {
    for (std::size_t at = text->find('&'); at != std::string::npos; at = text->find('&', at + 1))
      EXPECT_TRUE(std::regex_search(text->substr(at, 8), std::regex("^&(amp|lt|gt|quot|apos|#[0-9]+);")))
          << text->substr(at, 16);
  }
}

}  // namespace
// `dplr report merge --junit` writes JUnit from a report read back from its file: the same XML as from the
// run's own Report, for every report shape (non-finite figures stored as strings included).
TEST(Report, JunitOfAReportReadBackIsTheSame) {
  for (const auto& [name, report] : testing::sample_reports()) {
    const auto read_back = nlohmann::json::parse(to_json(report).dump());
    EXPECT_EQ(junit_xml(read_back), junit_xml(report)) << name;
  }
}

TEST(Report, SweepAndMergedFieldsAreWritten) {
  for (const auto& [name, report] : testing::sample_reports()) {
    const auto json = to_json(report);
    ASSERT_TRUE(json.contains("sweep") && json.contains("merged_from")) << name;
    for (const auto& c : json.at("cases")) EXPECT_TRUE(c.contains("sweep_index")) << name;
    if (name == "shard") {
      EXPECT_EQ(json["sweep"]["shard"], (nlohmann::json{{"index", 1}, {"count", 4}}));
      EXPECT_EQ(json["cases"][0]["sweep_index"], 5);
    }
    if (name == "merged") {
      EXPECT_EQ(json["merged_from"].size(), 2u);
    }
  }
}

}  // namespace dplr
