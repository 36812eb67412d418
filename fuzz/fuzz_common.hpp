// Shared by the libFuzzer targets: the property each checks beyond "no crash, no sanitizer report, no
// exception but InputError" — whatever parses must write back and parse again to the same tensors.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "io/tensor_io.hpp"

namespace dplr::fuzz {

inline std::span<const std::byte> as_bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

[[noreturn]] inline void bug(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

inline void expect_same(const Tensor& a, const Tensor& b) {
  if (a.dtype != b.dtype || a.shape != b.shape || a.values.size() != b.values.size()) bug("tensor changed on rewrite");
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    const double x = a.values[i], y = b.values[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::bit_cast<std::uint64_t>(x) != std::bit_cast<std::uint64_t>(y)) bug("value changed on rewrite");
  }
}

inline void expect_same(const TensorFile& a, const TensorFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) bug("file changed on rewrite");
  for (const auto& [name, t] : a.tensors) {
    const auto it = b.tensors.find(name);
    if (it == b.tensors.end()) bug("tensor lost on rewrite");
    expect_same(t, it->second);
  }
}

}  // namespace dplr::fuzz
