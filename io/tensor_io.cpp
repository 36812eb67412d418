// Tensor files on disk: picks the format from the path, reads whole files, writes through a temporary
// file, and handles folders of NAME.npy (see io/tensor_io.hpp).
#include "io/tensor_io.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <system_error>

#include "core/memory.hpp"
#include "io/detail/io_common.hpp"

namespace dplr {
namespace {

namespace fs = std::filesystem;
using io_detail::fail;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

void write_bytes(const fs::path& path, std::span<const std::byte> bytes) {
  // Write beside the target and rename, so readers never see a half-written file.
  fs::path temporary = path;
  temporary += ".partial";
  {
    File f(std::fopen(temporary.c_str(), "wb"));
    if (!f) fail(path.string(), "cannot create {}: {}", temporary.string(), std::strerror(errno));
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
      const int error = errno;
      f.reset();
      std::error_code ignored;
      fs::remove(temporary, ignored);
      fail(path.string(), "cannot write: {}", std::strerror(error));
    }
    if (std::fclose(f.release()) != 0) {
      const int error = errno;
      std::error_code ignored;
      fs::remove(temporary, ignored);
      fail(path.string(), "cannot write: {}", std::strerror(error));
    }
  }
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    fail(path.string(), "cannot write: {}", ec.message());
  }
}

// A tensor name becomes a file name in a folder: it must be one plain path component.
void check_file_name(const std::string& name, const fs::path& folder) {
  if (name.empty() || name == "." || name == ".." || name.find_first_of(std::string_view("/\0", 2)) != std::string::npos)
    fail(folder.string(), "tensor name '{}' cannot be a file name NAME.npy in a folder", name);
}

}  // namespace

std::vector<std::byte> read_file_bytes(const fs::path& path) { return read_file_prefix(path, SIZE_MAX); }

std::vector<std::byte> read_file_prefix(const fs::path& path, std::size_t limit) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path.string(), "is a directory, expected a file");
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) fail(path.string(), "cannot open: {}", std::strerror(errno));
  // A device or a pipe (a symlink to /dev/zero) has no size to check and may never end.
  if (!fs::is_regular_file(path, ec)) fail(path.string(), "is not a regular file (a device, pipe or socket?)");
  const auto size = fs::file_size(path, ec);
  if (ec) fail(path.string(), "cannot read its size: {}", ec.message());
  if (limit == SIZE_MAX) require_memory(size, path.string(), "reading the file");
  // Read in chunks rather than trust the size taken beforehand (the file may change), never past `limit`.
  std::vector<std::byte> bytes;
  bytes.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(size, limit)));
  std::byte buffer[1 << 16];
  while (bytes.size() < limit) {
    const std::size_t want = std::min(sizeof buffer, limit - bytes.size());
    const std::size_t n = std::fread(buffer, 1, want, f.get());
    bytes.insert(bytes.end(), buffer, buffer + n);
    if (n < want) break;
  }
  if (std::ferror(f.get())) fail(path.string(), "cannot read: {}", std::strerror(errno));
  return bytes;
}

TensorFileFormat tensor_file_format(const fs::path& path) {
  std::error_code ec;
  const std::string extension = path.extension().string();
  // A path with no extension names a folder (to create, when writing).
  if (fs::is_directory(path, ec) || !path.has_filename() || extension.empty()) return TensorFileFormat::NpyFolder;
  if (extension == ".safetensors") return TensorFileFormat::Safetensors;
  if (extension == ".npy") return TensorFileFormat::Npy;
  if (extension == ".npz") return TensorFileFormat::Npz;
  fail(path.string(), "unknown tensor file type '{}' (expected .safetensors, .npy, .npz or a folder of NAME.npy)",
       extension);
}

TensorFile read_tensor_file(const fs::path& path) {
  const std::string origin = path.string();
  switch (tensor_file_format(path)) {
    case TensorFileFormat::Safetensors: {
      std::error_code ec;
      const auto prefix = read_file_prefix(path, 8);
      io_detail::check_safetensors_prefix(prefix, fs::file_size(path, ec), origin);
      return parse_safetensors(read_file_bytes(path), origin);
    }
    case TensorFileFormat::Npz: return parse_npz(read_file_bytes(path), origin);
    case TensorFileFormat::NpyFolder: return read_npy_folder(path);
    case TensorFileFormat::Npy: {
      TensorFile file;
      file.tensors.emplace(path.stem().string(), parse_npy(read_file_bytes(path), origin));
      return file;
    }
  }
  fail(origin, "unreachable format");
}

void write_tensor_file(const fs::path& path, const TensorFile& file, const TensorWriteOptions& options) {
  const std::string origin = path.string();
  switch (tensor_file_format(path)) {
    case TensorFileFormat::Safetensors: return write_bytes(path, serialize_safetensors(file, origin));
    case TensorFileFormat::Npz: return write_bytes(path, serialize_npz(file, options, origin));
    case TensorFileFormat::NpyFolder: return write_npy_folder(path, file, options);
    case TensorFileFormat::Npy:
      if (file.tensors.size() != 1)
        fail(origin, "an .npy file holds exactly one tensor, but {} were given; use .npz, .safetensors or a folder",
             file.tensors.size());
      if (!file.metadata.empty()) fail(origin, "an .npy file cannot hold metadata; use .safetensors, .npz or a folder");
      return write_bytes(path, serialize_npy(file.tensors.begin()->second, options, origin));
  }
}

TensorFile read_npy_folder(const fs::path& folder) {
  const std::string origin = folder.string();
  std::error_code ec;
  fs::directory_iterator it(folder, ec);
  if (ec) fail(origin, "cannot list the folder: {}", ec.message());
  TensorFile file;
  for (const fs::directory_entry& entry : it) {
    const fs::path& p = entry.path();
    if (!entry.is_regular_file(ec)) continue;
    if (p.filename() == io_detail::kMetadataMember) {
      file.metadata = io_detail::parse_metadata_json(read_file_bytes(p), p.string());
    } else if (p.extension() == ".npy" && !p.stem().empty()) {
      file.tensors.emplace(p.stem().string(), parse_npy(read_file_bytes(p), p.string()));
    }
  }
  if (file.tensors.empty()) fail(origin, "the folder holds no NAME.npy files");
  return file;
}

void write_npy_folder(const fs::path& folder, const TensorFile& file, const TensorWriteOptions& options) {
  const std::string origin = folder.string();
  if (file.tensors.empty()) fail(origin, "no tensors to write (a folder of NAME.npy must hold at least one)");
  for (const auto& [name, tensor] : file.tensors) check_file_name(name, folder);
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) fail(origin, "cannot create the folder: {}", ec.message());
  // Stale NAME.npy files of other names would join the tensors on the next read.
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, ec))
    if (entry.path().extension() == ".npy" && !file.tensors.contains(entry.path().stem().string()))
      fail(origin, "the folder already holds {}, which is not among the tensors written; remove it first",
           entry.path().filename().string());
  if (ec) fail(origin, "cannot list the folder: {}", ec.message());
  for (const auto& [name, tensor] : file.tensors) {
    const fs::path p = folder / (name + ".npy");
    write_bytes(p, serialize_npy(tensor, options, p.string()));
  }
  const fs::path metadata_path = folder / io_detail::kMetadataMember;
  if (!file.metadata.empty()) {
    const std::string text = io_detail::metadata_json(file.metadata, metadata_path.string());
    write_bytes(metadata_path, std::as_bytes(std::span(text)));
  } else if (fs::exists(metadata_path, ec)) {
    fs::remove(metadata_path, ec);  // a stale one would lend old metadata to these tensors
  }
}

}  // namespace dplr
