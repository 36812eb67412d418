#include "core/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <limits>

namespace dplr {
namespace {

struct FloatFormat {
  int significand_bits;  // p, including the implicit bit
  int min_exponent;      // exponent of the smallest normal, as in 2^min_exponent
  int max_exponent;      // exponent of the largest finite value's leading bit
};

constexpr FloatFormat format_of(DType dtype) {
  switch (dtype) {
    case DType::F64: return {53, -1022, 1023};
    case DType::F32: return {24, -126, 127};
    case DType::F16: return {11, -14, 15};
    case DType::BF16: return {8, -126, 127};
    default: return {0, 0, 0};
  }
}

// 2^e, exactly, from its bits where it is a normal double (no libm call: ldexp and ilogb were most of the
// comparison's time on a training-scale recording, 3.4e7 elements a tensor, two roundings an element).
double pow2(int e) {
  return e >= -1022 ? std::bit_cast<double>(static_cast<std::uint64_t>(e + 1023) << 52) : std::ldexp(1.0, e);
}

// floor(log2 |x|) of a finite non-zero normal double; a subnormal double gives -1023, below the smallest normal
// exponent of every format, which the callers clamp to.
int exponent_of(double x) { return static_cast<int>((std::bit_cast<std::uint64_t>(x) >> 52) & 0x7ff) - 1023; }

// Rounds x to the format by scaling to an integer grid: the scaling by a power of two is exact and nearbyint
// rounds to nearest even in the default rounding mode.
double round_to_format(double x, FloatFormat f) {
  if (!std::isfinite(x) || x == 0.0 || f.significand_bits >= 53) return x;
  const int exponent = std::max(exponent_of(x), f.min_exponent);  // subnormal grid below the smallest normal
  const int spacing_exponent = exponent - (f.significand_bits - 1);
  const double rounded = std::nearbyint(x * pow2(-spacing_exponent)) * pow2(spacing_exponent);
  const double largest = (2.0 - pow2(1 - f.significand_bits)) * pow2(f.max_exponent);
  if (std::fabs(rounded) > largest) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return rounded;
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32})
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
  }
  return 0;
}

bool dtype_is_float(DType dtype) { return format_of(dtype).significand_bits > 0; }

int dtype_significand_bits(DType dtype) { return format_of(dtype).significand_bits; }

double dtype_unit_roundoff(DType dtype) {
  const int p = dtype_significand_bits(dtype);
  return p > 0 ? std::ldexp(1.0, -p) : 0.0;
}

double round_to_dtype(double x, DType dtype) {
  if (!dtype_is_float(dtype)) return std::nearbyint(x);
  return round_to_format(x, format_of(dtype));
}

double dtype_ulp(double x, DType dtype) {
  const FloatFormat f = format_of(dtype);
  if (f.significand_bits == 0) return 1.0;
  const double r = round_to_format(x, f);
  const int exponent = (r == 0.0 || !std::isfinite(r)) ? f.min_exponent : std::max(exponent_of(r), f.min_exponent);
  return pow2(exponent - (f.significand_bits - 1));
}

double fp16_bits_to_double(std::uint16_t bits) {
  const int sign = bits >> 15, exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  double magnitude;
  if (exponent == 0) magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  else if (exponent == 31) magnitude = mantissa ? std::numeric_limits<double>::quiet_NaN()
                                                : std::numeric_limits<double>::infinity();
  else magnitude = std::ldexp(static_cast<double>(mantissa | 0x400), exponent - 25);
  return sign ? -magnitude : magnitude;
}

double bf16_bits_to_double(std::uint16_t bits) {
  return static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16));
}

std::uint16_t double_to_fp16_bits(double x) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return 0x7e00;
  const double r = std::fabs(round_to_format(x, format_of(DType::F16)));
  if (std::isinf(r)) return sign | 0x7c00;
  if (r == 0.0) return sign;
  if (r < std::ldexp(1.0, -14))  // subnormal: r = m * 2^-24 exactly
    return sign | static_cast<std::uint16_t>(std::ldexp(r, 24));
  const int exponent = std::ilogb(r);
  const auto mantissa = static_cast<std::uint16_t>(std::ldexp(r, 10 - exponent)) & 0x3ff;
  return sign | static_cast<std::uint16_t>((exponent + 15) << 10) | mantissa;
}

std::uint16_t double_to_bf16_bits(double x) {
  if (std::isnan(x)) return 0x7fc0;
  // The bf16-rounded value is exactly representable in float, so the cast is exact.
  const float r = static_cast<float>(round_to_format(x, format_of(DType::BF16)));
  return static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(r) >> 16);
}

}  // namespace dplr
