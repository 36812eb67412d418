// Storage dtypes of recorded tensors and exact conversions between them and double.
// Every floating dtype here (F64, F32, F16, BF16) widens exactly into double; narrowing rounds to nearest,
// ties to even, directly from double (never through float, which would round twice).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dplr {

enum class DType { F64, F32, F16, BF16, I64, I32 };

// safetensors spelling: "F64", "F32", "F16", "BF16", "I64", "I32".
std::string_view dtype_name(DType dtype);
std::optional<DType> dtype_from_name(std::string_view name);
std::size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);

// Significand bits including the implicit one (53, 24, 11, 8); 0 for integer dtypes.
int dtype_significand_bits(DType dtype);
// Unit roundoff u = 2^-p of round-to-nearest in the dtype.
double dtype_unit_roundoff(DType dtype);

// x correctly rounded (nearest, ties to even, with overflow to infinity and gradual underflow) to dtype.
double round_to_dtype(double x, DType dtype);
// Spacing of dtype values at |x| (the ulp of the dtype value nearest to x); subnormal spacing near zero.
double dtype_ulp(double x, DType dtype);

double fp16_bits_to_double(std::uint16_t bits);
double bf16_bits_to_double(std::uint16_t bits);
std::uint16_t double_to_fp16_bits(double x);  // rounds to nearest even
std::uint16_t double_to_bf16_bits(double x);  // rounds to nearest even

}  // namespace dplr
