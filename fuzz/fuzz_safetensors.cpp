// libFuzzer target for parse_safetensors (scripts/run-fuzzers.sh builds and runs it).
// Any InputError is a correct answer; a crash, a sanitizer report or another exception is a bug; and a
// file that parses must serialize and parse back to the same tensors and metadata.
#include "fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dplr::TensorFile file;
  try {
    file = dplr::parse_safetensors(dplr::fuzz::as_bytes(data, size), "fuzz.safetensors");
  } catch (const dplr::InputError&) {
    return 0;
  }
  dplr::fuzz::expect_same(file, dplr::parse_safetensors(dplr::serialize_safetensors(file), "rewritten"));
  return 0;
}
