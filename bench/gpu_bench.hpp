// The GPU kernel benchmarks (bench/bench_gpu.cpp): validates each shape against the exact reference, then
// prints a table, writes JSON to json_path when given.
// Returns 0; throws dplr::gpu::CudaError (a CUDA call failed) or std::runtime_error (a wrong result: no time printed).
#pragma once

#include <string>

namespace dplr {
// Which part of the benchmarks runs: "all"; "forward" (decode, fused recurrent, chunk forward); "training" (the
// forward + backward steps, with the backward's stages timed alone). Anything else throws std::invalid_argument.
int run_gpu_benchmarks(const char* json_path, const std::string& part = "all");
}
