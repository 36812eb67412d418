// The GPU kernel benchmarks (bench/bench_gpu.cu): prints a table, writes JSON to json_path when given.
// Returns 0, or throws dplr::gpu::CudaError.
#pragma once

namespace dplr {
int run_gpu_benchmarks(const char* json_path);
}
