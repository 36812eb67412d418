// Helpers for the io/ tests: tensors with awkward values, bitwise comparison, byte-string building, and an
// EXPECT that a call throws InputError mentioning given words.
#pragma once
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace dplr::test {

inline const std::vector<DType> kAllDTypes = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32};
inline const std::vector<DType> kNpyDTypes = {DType::F64, DType::F32, DType::F16, DType::I64, DType::I32};

// numel values exactly representable in dtype, led by the awkward ones: signed zero, NaN, infinities,
// the smallest subnormal and the largest finite value (floats); extremes (integers).
inline Tensor make_tensor(DType dtype, std::vector<std::int64_t> shape, unsigned seed = 1) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<double> special;
  const double inf = std::numeric_limits<double>::infinity();
  switch (dtype) {
    case DType::F64: special = {-0.0, std::nan(""), inf, -inf, 4.9406564584124654e-324, 1.7976931348623157e308}; break;
    case DType::F32: special = {-0.0, std::nan(""), inf, -inf, std::ldexp(1.0, -149), 3.4028234663852886e38}; break;
    case DType::F16: special = {-0.0, std::nan(""), inf, -inf, std::ldexp(1.0, -24), 65504.0}; break;
    case DType::BF16: special = {-0.0, std::nan(""), inf, -inf, std::ldexp(1.0, -133), 3.3895313892515355e38}; break;
    case DType::I64: special = {9007199254740992.0, -9007199254740992.0, -1.0, 0.0}; break;
    case DType::I32: special = {2147483647.0, -2147483648.0, -1.0, 0.0}; break;
  }
  const auto n = static_cast<std::size_t>(t.numel());
  for (std::size_t i = 0; i < n; ++i) {
    double v = i < special.size() ? special[i] : normal(rng) * (dtype_is_float(dtype) ? 1.0 : 1000.0);
    t.values.push_back(dtype_is_float(dtype) ? round_to_dtype(v, dtype) : std::nearbyint(v));
  }
  return t;
}

// Equal bit for bit, except that any NaN equals any NaN.
inline ::testing::AssertionResult same_values(const std::vector<double>& expected, const std::vector<double>& actual) {
  if (expected.size() != actual.size())
    return ::testing::AssertionFailure() << "sizes differ: " << expected.size() << " vs " << actual.size();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double e = expected[i], a = actual[i];
    if (std::isnan(e) && std::isnan(a)) continue;
    if (std::bit_cast<std::uint64_t>(e) != std::bit_cast<std::uint64_t>(a))
      return ::testing::AssertionFailure() << "element " << i << ": expected " << e << ", got " << a;
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult same_tensor(const Tensor& expected, const Tensor& actual) {
  if (expected.dtype != actual.dtype)
    return ::testing::AssertionFailure() << "dtype " << dtype_name(expected.dtype) << " vs " << dtype_name(actual.dtype);
  if (expected.shape != actual.shape)
    return ::testing::AssertionFailure() << "shape " << shape_string(expected.shape) << " vs " << shape_string(actual.shape);
  return same_values(expected.values, actual.values);
}

inline std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string string_of(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
inline void put_le(std::string& s, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The message of the InputError that f throws, or a failure naming what happened instead.
template <class F>
::testing::AssertionResult throws_input_error(F&& f, std::initializer_list<std::string_view> words) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (std::string_view w : words)
      if (message.find(w) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << w << "\": " << message;
    return ::testing::AssertionSuccess() << message;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-InputError: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace dplr::test
