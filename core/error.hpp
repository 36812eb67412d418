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

// An exact result (or exact stage tensor) beyond double's exponent range: the case cannot be judged at all. A sweep
// reports such a drawn case as out of range instead of stopping (verify/property_sweep.cpp).
class BeyondDoubleRangeError : public InputError {
 public:
  using InputError::InputError;
};

}  // namespace dplr
