// Errors that reach the user. InputError means bad usage or bad input (exit code 2): its message names
// the file, the tensor and what was expected.
#pragma once
#include <stdexcept>
#include <string>

namespace dplr {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace dplr
