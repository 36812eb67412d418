#!/usr/bin/env bash
# One call on the device machine (GPU): `dplr check` (the CPU part and the GPU sweep), the GPU tests,
# `dplr bench --gpu`, and fla on the same card when its package is carried. Build here first:
#   cmake -S . -B build-gpu -G Ninja -DDPLR_STATIC_DEPS=ON && cmake --build build-gpu --target dplr test_gpu_forward
#   mkdir -p carry && cp build-gpu/cli/dplr build-gpu/tests/gpu/test_gpu_forward carry/
# and run it with carry=["carry"]. Results go to $OUT (default out/device). SKIP_CHECK=1, SKIP_TESTS=1,
# SKIP_BENCH=1, SKIP_FLA=1, SKIP_SAN=1 leave a part out (to split the work over calls of at most 10 minutes;
# run the bench and fla in the same call, so that both are timed on one card in one session).
set -u
OUT=${OUT:-out/device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/device.txt"
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  echo "== dplr check"
  ./carry/dplr check --report "$OUT/check-report.json" > "$OUT/check.log" 2>&1
  echo "check rc=$?" | tee -a "$OUT/check.log"
  grep -E "^\[(fail|error)|skipped|verdict|certified to" "$OUT/check.log" | head -40
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== gpu tests"
  ./carry/test_gpu_forward > "$OUT/gpu-test.log" 2>&1
  echo "gpu tests rc=$?" | tee -a "$OUT/gpu-test.log"
  tail -3 "$OUT/gpu-test.log"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== dplr bench --gpu"
  ./carry/dplr bench --gpu --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
  echo "bench rc=$?" | tee -a "$OUT/bench.log"
  grep -E "median" "$OUT/bench.log" | grep -v "stage" | head -20
fi
if [ -d carry/fla_src ] && [ "${SKIP_FLA:-0}" != 1 ]; then
  echo "== fla, same card"
  PYTHONPATH=$PWD/carry/fla_src timeout "${FLA_TIMEOUT:-150}" python3 bench/fla_peer.py "$OUT/fla.json" > "$OUT/fla.log" 2>&1
  echo "fla rc=$?"
  grep -v Warning "$OUT/fla.log" | tail -12
fi
if [ "${SKIP_SAN:-0}" != 1 ]; then
  echo "== compute-sanitizer (every kernel once)"
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    timeout 150 "$SAN" --tool $tool --print-limit 20 ./carry/test_gpu_forward --gtest_filter='GpuSanitize.*' > "$OUT/san_$tool.txt" 2>&1
    echo "$tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san_$tool.txt" | tail -1)" | tee -a "$OUT/sanitizer.log"
  done
  rm -f "$OUT"/san_*.txt
fi
