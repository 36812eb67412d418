// libFuzzer target for parse_npy (scripts/run-fuzzers.sh builds and runs it).
// Any InputError is a correct answer; a crash, a sanitizer report or another exception is a bug; and an
// array that parses must serialize (in both memory orders) and parse back to the same tensor.
#include "fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dplr::Tensor tensor;
  try {
    tensor = dplr::parse_npy(dplr::fuzz::as_bytes(data, size), "fuzz.npy");
  } catch (const dplr::InputError&) {
    return 0;
  }
  dplr::fuzz::expect_same(tensor, dplr::parse_npy(dplr::serialize_npy(tensor), "rewritten"));
  dplr::fuzz::expect_same(tensor, dplr::parse_npy(dplr::serialize_npy(tensor, {false, 3, true, true}), "rewritten"));
  return 0;
}
