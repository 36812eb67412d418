// dplr_bench_gpu [out.json [part]]: the GPU kernel benchmarks as a standalone program (also `dplr bench --gpu
// [--gpu-part P]`); part: all (default), forward, training.
#include "bench/gpu_bench.hpp"

int main(int argc, char** argv) {
  return dplr::run_gpu_benchmarks(argc > 1 ? argv[1] : nullptr, argc > 2 ? argv[2] : "all");
}
