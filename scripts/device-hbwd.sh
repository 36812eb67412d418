#!/usr/bin/env bash
# Device check of the tensor-core h_bwd (session 8): the backward GPU tests (every case three ways, the refusals,
# bitwise repeatability, the sanitizer pass) and the training bench's stage times. Build here first:
#   cmake --build build --target dplr test_gpu_backward -j1 && mkdir -p carry && cp build/cli/dplr build/tests/gpu/test_gpu_backward carry/
# Run with carry=["carry"]. Success: test_gpu_backward all PASSED, compute-sanitizer racecheck / memcheck 0 errors on
# GpuSanitizeBackward, and the bench line "  bwd stage h_bwd" (prediction 1.05-1.25 ms; was 2.68).
set -u
./carry/test_gpu_backward 2>&1 | tail -40
compute-sanitizer --tool racecheck ./carry/test_gpu_backward --gtest_filter='GpuSanitizeBackward.*' 2>&1 | tail -5
compute-sanitizer --tool memcheck ./carry/test_gpu_backward --gtest_filter='GpuSanitizeBackward.*' 2>&1 | tail -5
./carry/dplr bench --gpu --gpu-part training 2>&1 | grep -E "bwd stage|training|backward" | head -30
