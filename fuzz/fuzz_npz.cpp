// libFuzzer target for parse_npz (scripts/run-fuzzers.sh builds and runs it): zip structure, zip64
// extras, inflate limits, CRC, and the npy members inside.
// Any InputError is a correct answer; a crash, a sanitizer report or another exception is a bug; and an
// archive that parses must serialize (stored and deflated) and parse back to the same tensors.
#include "fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dplr::TensorFile file;
  try {
    file = dplr::parse_npz(dplr::fuzz::as_bytes(data, size), "fuzz.npz");
  } catch (const dplr::InputError&) {
    return 0;
  }
  for (bool compress : {false, true})
    dplr::fuzz::expect_same(file, dplr::parse_npz(dplr::serialize_npz(file, {compress}), "rewritten"));
  return 0;
}
