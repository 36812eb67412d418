// SHA-256 (FIPS 180-4) of input files, for reports. Written here rather than taken from OpenSSL because
// libssl-dev is not among the project's dependencies (scripts/install-deps.sh) and the device machines lack it.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace dplr {

class Sha256 {
 public:
  // Fastest: the x86 SHA extensions where the CPU has them (~5x the portable rounds: a training-scale recording's
  // 1.5 GB in about a second), else the portable rounds; Portable: always the portable rounds (tests compare them).
  enum class Rounds { Fastest, Portable };
  explicit Sha256(Rounds rounds = Rounds::Fastest);
  void update(std::span<const std::byte> data);
  void update(std::string_view text);
  // The digest; the object is spent afterwards (call reset() to reuse it).
  std::array<std::uint8_t, 32> finish();
  void reset();
  // Whether this object runs the SHA extensions.
  bool uses_sha_extensions() const { return sha_extensions_; }

 private:
  void compress(const std::uint8_t* blocks, std::size_t count);

  bool sha_extensions_ = false;

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_;
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

std::string to_hex(std::span<const std::uint8_t> bytes);
std::string sha256_hex(std::string_view data);
// Streams the file; throws InputError naming it when it cannot be read or is not a regular file. A folder
// (of NAME.npy) hashes to the SHA-256 of its manifest: one line "<sha256 of the file>  <file name>\n" per
// .npy file and __metadata__.json in it, in name order (sha256sum's format).
std::string sha256_file(const std::filesystem::path& path);

}  // namespace dplr
