// Tensor files: reading and writing .safetensors, .npy, .npz and folders of NAME.npy as dplr::TensorFile.
//
// Reading is strict (as strict as the safetensors crate's own reader, and as numpy's format spec): every
// problem is a dplr::InputError whose message starts with the file (the `origin`), names the tensor where
// known, and says what was expected. No parser allocates more than the bytes it was given justify.
// Values widen exactly to double; int64 values beyond 2^53 (not exact in double) are refused.
// Writing rounds each value to its tensor's dtype (round to nearest, ties to even, from double); integer
// tensors must hold integral values in range.
//
// Formats:
//   .safetensors  F64 F32 F16 BF16 I64 I32, `__metadata__` (string -> string).
//   .npy          format versions 1.0, 2.0, 3.0; byte order '<', '>' or '|' (read as little-endian); C or
//                 Fortran order (Fortran is reordered to C on read); f2 f4 f8 i4 i8. bf16 has no npy
//                 dtype and is refused on write. One tensor, named after the file's stem.
//   .npz          a zip of NAME.npy members, stored or deflated (numpy's np.savez / np.savez_compressed).
//                 zip64 members' extra fields (numpy writes them) are read; zip64 archives (over 4 GiB or
//                 65535 members) are refused. An optional `__metadata__.json` member holds the metadata
//                 as a JSON object of strings (a dplr convention; numpy sees it as a plain member).
//   folder        NAME.npy files, plus the optional `__metadata__.json`; other entries are ignored.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace dplr {

// The safetensors crate refuses headers above this (its MAX_HEADER_SIZE).
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// An npz member may not inflate beyond this, nor beyond what deflate can make of its compressed bytes
// (1032:1), nor beyond its declared size.
inline constexpr std::uint64_t kNpzMaxMemberBytes = std::uint64_t{16} << 30;

enum class TensorFileFormat { Safetensors, Npy, Npz, NpyFolder };

// Options for writing; each format uses the ones that apply to it.
struct TensorWriteOptions {
  bool compress = false;       // npz: deflate members (np.savez_compressed) instead of storing them
  int npy_version = 0;         // npy (also inside npz/folders): 0 picks 1.0, or 2.0 if the header needs it
  bool fortran_order = false;  // npy: write column-major data with fortran_order True
  bool big_endian = false;     // npy: '>' instead of '<'
};

// An existing directory, or a path with no extension (or ending in '/'), is a folder of NAME.npy; else by
// extension: .safetensors, .npy, .npz. Any other extension is an InputError.
TensorFileFormat tensor_file_format(const std::filesystem::path& path);

TensorFile read_tensor_file(const std::filesystem::path& path);
// Writes through a temporary file in the same folder and renames it, so a failed write leaves no half file.
void write_tensor_file(const std::filesystem::path& path, const TensorFile& file,
                       const TensorWriteOptions& options = {});

// In-memory forms (fuzzers and tests use them; the file functions call them). `origin` begins every
// error message (usually the file name).
TensorFile parse_safetensors(std::span<const std::byte> bytes, std::string_view origin);
std::vector<std::byte> serialize_safetensors(const TensorFile& file, std::string_view origin = "<safetensors>");

Tensor parse_npy(std::span<const std::byte> bytes, std::string_view origin);
std::vector<std::byte> serialize_npy(const Tensor& tensor, const TensorWriteOptions& options = {},
                                     std::string_view origin = "<npy>");

TensorFile parse_npz(std::span<const std::byte> bytes, std::string_view origin);
std::vector<std::byte> serialize_npz(const TensorFile& file, const TensorWriteOptions& options = {},
                                     std::string_view origin = "<npz>");

TensorFile read_npy_folder(const std::filesystem::path& folder);
// Creates the folder if needed. Refuses a folder already holding .npy files of other names, which a later
// read would mix in.
void write_npy_folder(const std::filesystem::path& folder, const TensorFile& file,
                      const TensorWriteOptions& options = {});

// The whole file, or an InputError naming it: also for a file that is not a regular file (a device, a pipe)
// or larger than the memory limit (core/memory.hpp).
std::vector<std::byte> read_file_bytes(const std::filesystem::path& path);
// At most the first `limit` bytes of a regular file.
std::vector<std::byte> read_file_prefix(const std::filesystem::path& path, std::size_t limit);

}  // namespace dplr
