// .npz reader and writer: a zip archive of NAME.npy members (numpy's np.savez / np.savez_compressed).
//
// Read: the end-of-central-directory record (EOCD), the central directory (CD), and each member's local
// header, which must agree with its CD entry (name, method, flags, CRC, sizes). Members must lie before
// the CD and not overlap (overlapping members are how zip bombs multiply). Stored (0) and deflated (8)
// members; the CRC-32 of every member is checked. numpy writes members with zip64 extra fields
// (force_zip64=True), so those are read; a zip64 EOCD (archives over 4 GiB or 65535 members) is refused.
// Inflating never allocates beyond what the member declares, deflate's 1032:1 limit on that member's
// compressed bytes, or kNpzMaxMemberBytes; output beyond the declared size is refused as it appears.
// Write: stored or deflated members, fixed timestamps (1980-01-01) so equal inputs give equal files.
#include <algorithm>
#include <climits>
#include <set>

#include <zlib.h>

#include "core/memory.hpp"
#include "io/detail/io_common.hpp"
#include "io/tensor_io.hpp"

namespace dplr {
namespace {

using io_detail::fail;
using io_detail::load_le;
using io_detail::store_le;

constexpr std::uint32_t kLocalSignature = 0x04034b50;
constexpr std::uint32_t kCentralSignature = 0x02014b50;
constexpr std::uint32_t kEndSignature = 0x06054b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22;
constexpr std::uint16_t kFlagEncrypted = 0x0001, kFlagDataDescriptor = 0x0008, kFlagStrongEncryption = 0x0040,
                        kFlagUtf8 = 0x0800;
constexpr std::uint64_t kDeflateMaxRatio = 1032;  // deflate's best case: 258-byte matches in ~2 bits each
constexpr std::size_t kZlibChunk = std::size_t{1} << 30;  // zlib counts in uInt; feed it at most this per call

struct Member {
  std::string name;
  std::uint16_t flags = 0, method = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, uncompressed = 0, local_offset = 0;
  std::uint64_t data_begin = 0, data_end = 0;  // of the compressed bytes, from the local header
};

// Sizes (and the local header offset) of 0xFFFFFFFF live in the zip64 extra field (id 1), in this order.
void apply_zip64_extra(std::span<const std::byte> extra, Member& m, bool central, std::string_view where) {
  const bool need_uncompressed = m.uncompressed == 0xffffffff, need_compressed = m.compressed == 0xffffffff;
  const bool need_offset = central && m.local_offset == 0xffffffff;
  if (!need_uncompressed && !need_compressed && !need_offset) return;
  std::size_t p = 0;
  while (p + 4 <= extra.size()) {
    const auto id = load_le(extra.data() + p, 2), size = load_le(extra.data() + p + 2, 2);
    if (p + 4 + size > extra.size()) break;
    if (id == 1) {
      std::size_t q = p + 4;
      auto next = [&](std::uint64_t& field) {
        if (q + 8 > p + 4 + size) fail(where, "zip64 extra field is too short for the sizes it must hold");
        field = load_le(extra.data() + q, 8);
        q += 8;
      };
      if (need_uncompressed) next(m.uncompressed);
      if (need_compressed) next(m.compressed);
      if (need_offset) next(m.local_offset);
      return;
    }
    p += 4 + size;
  }
  fail(where, "a size of 0xFFFFFFFF calls for a zip64 extra field, which is missing or malformed");
}

std::uint32_t crc_of(std::span<const std::byte> data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t p = 0; p < data.size(); p += kZlibChunk) {
    const std::size_t n = std::min(kZlibChunk, data.size() - p);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data() + p), static_cast<uInt>(n));
  }
  return static_cast<std::uint32_t>(crc);
}

// Inflates a member; with `prefix` below `declared`, stops once that many bytes are out (at least), for a
// look at the npy header before the whole member is inflated.
std::vector<std::byte> inflate_member(std::span<const std::byte> in, std::uint64_t declared, std::string_view where,
                                      std::uint64_t prefix = UINT64_MAX) {
  if (declared > kNpzMaxMemberBytes)
    fail(where, "declares {} bytes uncompressed, above the {}-byte limit for a member", declared, kNpzMaxMemberBytes);
  if (declared > in.size() * kDeflateMaxRatio + 1024)
    fail(where, "declares {} bytes uncompressed from {} compressed bytes, more than deflate can produce "
         "(a decompression bomb, or a corrupt archive)", declared, in.size());
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail(where, "zlib could not start inflating");
  struct End { z_stream* zs; ~End() { inflateEnd(zs); } } end{&zs};

  // Grow the output as data appears, never beyond the declared size; one probe byte past it detects excess.
  constexpr std::size_t kInitial = std::size_t{1} << 16;
  std::vector<std::byte> out(static_cast<std::size_t>(std::min<std::uint64_t>(declared, kInitial)));
  std::size_t produced = 0, fed = 0;
  unsigned char probe = 0;
  for (;;) {
    if (zs.avail_in == 0 && fed < in.size()) {
      const std::size_t n = std::min(kZlibChunk, in.size() - fed);
      zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data() + fed));
      zs.avail_in = static_cast<uInt>(n);
      fed += n;
    }
    bool probing = false;
    if (produced == out.size()) {
      if (out.size() < declared)
        out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(declared, std::max(2 * out.size(), kInitial))));
      else
        probing = true;
    }
    if (probing) {
      zs.next_out = &probe;
      zs.avail_out = 1;
    } else {
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      zs.avail_out = static_cast<uInt>(std::min(kZlibChunk, out.size() - produced));
    }
    const uInt room = zs.avail_out;
    const int ret = inflate(&zs, Z_NO_FLUSH);
    const std::size_t got = room - zs.avail_out;
    if (probing && got > 0) fail(where, "inflates to more than the {} bytes it declares", declared);
    if (!probing) produced += got;
    if (produced >= prefix && prefix < declared) {
      out.resize(produced);
      return out;
    }
    if (ret == Z_STREAM_END) break;
    if (ret == Z_BUF_ERROR && zs.avail_in == 0 && fed == in.size())
      fail(where, "deflate data ends before its stream does, after {} of {} declared bytes (truncated member?)",
           produced, declared);
    if (ret != Z_OK && ret != Z_BUF_ERROR)
      fail(where, "corrupt deflate data ({})", zs.msg ? zs.msg : "zlib error " + std::to_string(ret));
  }
  if (produced != declared) fail(where, "inflates to {} bytes, but declares {}", produced, declared);
  const std::size_t consumed = fed - zs.avail_in;
  if (consumed != in.size())
    fail(where, "deflate stream ends after {} of the member's {} compressed bytes", consumed, in.size());
  return out;
}

std::vector<std::byte> deflate_member(std::span<const std::byte> in, std::string_view where) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    fail(where, "zlib could not start deflating");
  struct End { z_stream* zs; ~End() { deflateEnd(zs); } } end{&zs};
  std::vector<std::byte> out(deflateBound(&zs, static_cast<uLong>(in.size())));
  zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());  // below 4 GiB: the caller refuses larger members
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) fail(where, "zlib failed to deflate");
  out.resize(out.size() - zs.avail_out);
  return out;
}

std::size_t find_end_record(std::span<const std::byte> bytes, std::string_view origin) {
  if (bytes.size() < kEndSize) fail(origin, "{} bytes is too short for a zip archive (.npz)", bytes.size());
  // The EOCD is the last 22 bytes plus a comment of up to 65535 bytes that must reach the end exactly.
  const std::size_t lowest = bytes.size() - kEndSize > 0xffff ? bytes.size() - kEndSize - 0xffff : 0;
  for (std::size_t pos = bytes.size() - kEndSize + 1; pos-- > lowest;)
    if (load_le(bytes.data() + pos, 4) == kEndSignature &&
        pos + kEndSize + load_le(bytes.data() + pos + 20, 2) == bytes.size())
      return pos;
  fail(origin, "not a zip archive (.npz): no end-of-central-directory record (truncated file?)");
}

std::vector<Member> read_directory(std::span<const std::byte> bytes, std::string_view origin) {
  const std::size_t eocd = find_end_record(bytes, origin);
  const std::byte* e = bytes.data() + eocd;
  const auto disk = load_le(e + 4, 2), cd_disk = load_le(e + 6, 2), disk_entries = load_le(e + 8, 2),
             entries = load_le(e + 10, 2), cd_size = load_le(e + 12, 4), cd_offset = load_le(e + 16, 4);
  if ((eocd >= 20 && load_le(e - 20, 4) == kZip64LocatorSignature) || entries == 0xffff || cd_size == 0xffffffff ||
      cd_offset == 0xffffffff)
    fail(origin, "zip64 archive (over 4 GiB or 65535 members): not supported; use .safetensors or a folder");
  if (disk != 0 || cd_disk != 0 || disk_entries != entries)
    fail(origin, "multi-disk zip archives are not supported");
  if (cd_offset + cd_size != eocd)
    fail(origin, "central directory at [{}, {}) does not end where the end record begins ({})", cd_offset,
         cd_offset + cd_size, eocd);

  std::vector<Member> members;
  std::set<std::string> names;
  std::size_t p = cd_offset;
  for (std::uint64_t i = 0; i < entries; ++i) {
    if (p + kCentralSize > eocd || load_le(bytes.data() + p, 4) != kCentralSignature)
      fail(origin, "central directory entry {} of {} is missing or malformed at offset {}", i + 1, entries, p);
    const std::byte* c = bytes.data() + p;
    const auto name_length = load_le(c + 28, 2), extra_length = load_le(c + 30, 2), comment_length = load_le(c + 32, 2);
    if (p + kCentralSize + name_length + extra_length + comment_length > eocd)
      fail(origin, "central directory entry {} runs past the directory's end", i + 1);
    Member m;
    m.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_length);
    const std::string where = fmt::format("{}: member '{}'", origin, m.name);
    m.flags = static_cast<std::uint16_t>(load_le(c + 8, 2));
    m.method = static_cast<std::uint16_t>(load_le(c + 10, 2));
    m.crc = static_cast<std::uint32_t>(load_le(c + 16, 4));
    m.compressed = load_le(c + 20, 4);
    m.uncompressed = load_le(c + 24, 4);
    if (load_le(c + 34, 2) != 0) fail(where, "lies on another disk (multi-disk archives are not supported)");
    m.local_offset = load_le(c + 42, 4);
    apply_zip64_extra({c + kCentralSize + name_length, extra_length}, m, true, where);
    if (m.flags & (kFlagEncrypted | kFlagStrongEncryption)) fail(where, "is encrypted, which is not supported");
    if (m.method != 0 && m.method != 8)
      fail(where, "uses compression method {} (expected 0, stored, or 8, deflated)", m.method);
    if (!names.insert(m.name).second) fail(where, "appears twice in the archive");
    p += kCentralSize + name_length + extra_length + comment_length;
    members.push_back(std::move(m));
  }
  if (p != eocd) fail(origin, "central directory holds {} bytes after its {} entries", eocd - p, entries);

  // Each local header must agree with its directory entry.
  for (Member& m : members) {
    const std::string where = fmt::format("{}: member '{}'", origin, m.name);
    const std::uint64_t q = m.local_offset;
    if (q > cd_offset || cd_offset - q < kLocalSize || load_le(bytes.data() + q, 4) != kLocalSignature)
      fail(where, "no local file header at offset {} (corrupt archive)", q);
    const std::byte* l = bytes.data() + q;
    const auto name_length = load_le(l + 26, 2), extra_length = load_le(l + 28, 2);
    if (q + kLocalSize + name_length + extra_length > cd_offset) fail(where, "local header runs into the central directory");
    if (std::string_view(reinterpret_cast<const char*>(l + kLocalSize), name_length) != m.name)
      fail(where, "local header names a different file than the central directory");
    Member local;
    local.flags = static_cast<std::uint16_t>(load_le(l + 6, 2));
    local.method = static_cast<std::uint16_t>(load_le(l + 8, 2));
    local.crc = static_cast<std::uint32_t>(load_le(l + 14, 4));
    local.compressed = load_le(l + 18, 4);
    local.uncompressed = load_le(l + 22, 4);
    apply_zip64_extra({l + kLocalSize + name_length, extra_length}, local, false, where);
    if (local.method != m.method || (local.flags & kFlagDataDescriptor) != (m.flags & kFlagDataDescriptor))
      fail(where, "local header and central directory disagree on compression method or flags");
    // With a data descriptor the local header may leave CRC and sizes zero.
    const bool deferred = (m.flags & kFlagDataDescriptor) && local.crc == 0 && local.compressed == 0 &&
                          local.uncompressed == 0;
    if (!deferred && (local.crc != m.crc || local.compressed != m.compressed || local.uncompressed != m.uncompressed))
      fail(where, "local header (CRC {:08x}, {} -> {} bytes) and central directory (CRC {:08x}, {} -> {} bytes) disagree",
           local.crc, local.compressed, local.uncompressed, m.crc, m.compressed, m.uncompressed);
    m.data_begin = q + kLocalSize + name_length + extra_length;
    if (m.compressed > cd_offset - m.data_begin)
      fail(where, "its {} compressed bytes run past the start of the central directory (truncated or corrupt)",
           m.compressed);
    m.data_end = m.data_begin + m.compressed;
    if (m.method == 0 && m.compressed != m.uncompressed)
      fail(where, "is stored uncompressed but declares {} bytes stored and {} bytes of content", m.compressed,
           m.uncompressed);
  }
  std::vector<const Member*> by_offset;
  for (const Member& m : members) by_offset.push_back(&m);
  std::ranges::sort(by_offset, {}, &Member::local_offset);
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->local_offset < by_offset[i - 1]->data_end)
      fail(origin, "members '{}' and '{}' overlap (a zip bomb, or a corrupt archive)", by_offset[i - 1]->name,
           by_offset[i]->name);
  return members;
}

// numpy itself refuses npy headers over 10000 bytes by default (max_header_size); this is far above.
constexpr std::uint64_t kNpzMaxNpyHeaderBytes = std::uint64_t{1} << 20;

// The npy header of a member, from its first bytes (inflating only those), so its size can be checked
// against the memory limit before the member is inflated and widened.
io_detail::NpyHeader member_header(std::span<const std::byte> stored, const Member& m, std::string_view where) {
  const std::uint64_t look = std::min(m.uncompressed, kNpzMaxNpyHeaderBytes);
  const std::vector<std::byte> inflated = m.method == 8 ? inflate_member(stored, m.uncompressed, where, look)
                                                        : std::vector<std::byte>();
  std::span<const std::byte> prefix = m.method == 8 ? std::span<const std::byte>(inflated) : stored;
  prefix = prefix.first(std::min<std::size_t>(prefix.size(), look));
  try {
    return io_detail::parse_npy_header(prefix, where);
  } catch (const InputError&) {
    if (look == kNpzMaxNpyHeaderBytes)
      fail(where, "its npy header does not end within its first {} bytes (expected a header of a few hundred "
           "bytes, as numpy writes)", kNpzMaxNpyHeaderBytes);
    throw;
  }
}

}  // namespace

TensorFile parse_npz(std::span<const std::byte> bytes, std::string_view origin) {
  TensorFile file;
  std::uint64_t widened = 0;  // bytes of the doubles of the members read so far
  for (const Member& m : read_directory(bytes, origin)) {
    const bool is_metadata = m.name == io_detail::kMetadataMember;
    const bool is_npy = m.name.size() > 4 && m.name.ends_with(".npy");
    if (!is_metadata && !is_npy)
      fail(origin, "member '{}' is not NAME.npy (nor {}); an .npz here holds only tensors", m.name,
           io_detail::kMetadataMember);
    const std::string tensor = is_npy ? m.name.substr(0, m.name.size() - 4) : std::string();
    const std::string where = is_npy ? fmt::format("{}: tensor '{}' (member {})", origin, tensor, m.name)
                                     : fmt::format("{}: member '{}'", origin, m.name);
    const auto stored = bytes.subspan(m.data_begin, m.compressed);
    if (is_npy) {
      const io_detail::NpyHeader header = member_header(stored, m, where);
      const std::uint64_t data_bytes = saturating_product({header.numel, dtype_size(header.dtype)});
      if (saturating_sum({header.data_start, data_bytes}) != m.uncompressed)
        fail(where, "declares {} bytes, but its npy header ('{}' x shape {}) needs {} + {} bytes", m.uncompressed,
             header.descr, shape_string(header.shape), header.data_start, data_bytes);
      const std::uint64_t doubles = saturating_product({header.numel, sizeof(double)});
      require_memory(saturating_sum({bytes.size(), widened, m.method == 8 ? m.uncompressed : 0, doubles}), where,
                     fmt::format("inflating and widening to double its {} x {}", header.descr,
                                 shape_string(header.shape)));
      widened = saturating_sum({widened, doubles});
    }
    std::vector<std::byte> inflated;
    if (m.method == 8) inflated = inflate_member(stored, m.uncompressed, where);
    const std::span<const std::byte> content = m.method == 8 ? std::span<const std::byte>(inflated) : stored;
    if (const std::uint32_t crc = crc_of(content); crc != m.crc)
      fail(where, "CRC-32 is {:08x}, but the archive records {:08x} (corrupt member)", crc, m.crc);
    if (is_metadata) file.metadata = io_detail::parse_metadata_json(content, where);
    else file.tensors.emplace(tensor, parse_npy(content, where));
  }
  return file;
}

std::vector<std::byte> serialize_npz(const TensorFile& file, const TensorWriteOptions& options, std::string_view origin) {
  struct Pending {
    std::string name;
    std::vector<std::byte> content;
  };
  std::vector<Pending> pending;
  for (const auto& [name, tensor] : file.tensors) {
    if (name.empty()) fail(origin, "a tensor with an empty name cannot be an .npz member");
    pending.push_back({name + ".npy", serialize_npy(tensor, options, fmt::format("{}: tensor '{}'", origin, name))});
  }
  if (!file.metadata.empty()) {
    std::vector<std::byte> text;
    io_detail::append(text, io_detail::metadata_json(file.metadata, origin));
    pending.push_back({std::string(io_detail::kMetadataMember), std::move(text)});
  }
  if (pending.size() >= 0xffff) fail(origin, "{} members would need zip64, which this writer does not produce", pending.size());

  std::vector<std::byte> out, directory;
  for (const Pending& p : pending) {
    const std::string where = fmt::format("{}: member '{}'", origin, p.name);
    if (p.content.size() >= 0xffffffff || p.name.size() > 0xffff)
      fail(where, "is too large for a zip archive without zip64; use .safetensors or a folder");
    const std::uint32_t crc = crc_of(p.content);
    std::vector<std::byte> deflated;
    if (options.compress) deflated = deflate_member(p.content, where);
    const auto& payload = options.compress ? deflated : p.content;
    const std::uint64_t offset = out.size();
    if (offset + kLocalSize + p.name.size() + payload.size() >= 0xffffffff)
      fail(origin, "the archive would pass 4 GiB, which needs zip64; use .safetensors or a folder");
    const bool utf8 = std::ranges::any_of(p.name, [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    const std::uint16_t flags = utf8 ? kFlagUtf8 : 0, method = options.compress ? 8 : 0;
    auto common = [&](std::vector<std::byte>& b) {  // version needed .. extra length, shared by both headers
      store_le(b, 20, 2);
      store_le(b, flags, 2);
      store_le(b, method, 2);
      store_le(b, 0, 2);       // time 00:00:00
      store_le(b, 0x0021, 2);  // date 1980-01-01
      store_le(b, crc, 4);
      store_le(b, payload.size(), 4);
      store_le(b, p.content.size(), 4);
      store_le(b, p.name.size(), 2);
      store_le(b, 0, 2);  // extra length
    };
    store_le(out, kLocalSignature, 4);
    common(out);
    io_detail::append(out, p.name);
    out.insert(out.end(), payload.begin(), payload.end());

    store_le(directory, kCentralSignature, 4);
    store_le(directory, 20, 2);  // version made by
    common(directory);
    store_le(directory, 0, 2);  // comment length
    store_le(directory, 0, 2);  // disk
    store_le(directory, 0, 2);  // internal attributes
    store_le(directory, 0, 4);  // external attributes
    store_le(directory, offset, 4);
    io_detail::append(directory, p.name);
  }
  const std::uint64_t cd_offset = out.size();
  if (cd_offset + directory.size() >= 0xffffffff)
    fail(origin, "the archive would pass 4 GiB, which needs zip64; use .safetensors or a folder");
  out.insert(out.end(), directory.begin(), directory.end());
  store_le(out, kEndSignature, 4);
  store_le(out, 0, 2);
  store_le(out, 0, 2);
  store_le(out, pending.size(), 2);
  store_le(out, pending.size(), 2);
  store_le(out, directory.size(), 4);
  store_le(out, cd_offset, 4);
  store_le(out, 0, 2);  // comment length
  return out;
}

}  // namespace dplr
