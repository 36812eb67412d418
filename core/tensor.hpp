// A host tensor as the tools see it: its storage dtype, its shape, and its values widened exactly to
// double (every supported dtype fits; integers up to 2^53). Readers and writers in io/ convert.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace dplr {

struct Tensor {
  DType dtype = DType::F64;
  std::vector<std::int64_t> shape;
  std::vector<double> values;  // row-major (C order)

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

std::string shape_string(const std::vector<std::int64_t>& shape);  // "[1, 256, 2, 64]"

using TensorMap = std::map<std::string, Tensor>;

struct TensorFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ (string to string)
};

}  // namespace dplr
