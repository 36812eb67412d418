#!/bin/bash
# One device call: tests, compute-sanitizer (memcheck, racecheck), our benchmark, fla on the same card.
# Expects the binaries in carry/ (test_gpu_forward, dplr_bench_gpu) and fla's python package in carry/fla_src.
# Logs go to $OUT (test.log, sanitizer.log, bench.json, bench.log, fla.json, fla.log).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv 2>&1 | tee "$OUT/bench.log"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
echo "== tests" ; timeout 240 ./carry/test_gpu_forward 2>&1 > "$OUT/test.log"; echo "test rc=$?" | tee -a "$OUT/test.log"
grep -E "^\s+(recurrent|chunk)|FAILED|PASSED|Failure|rel RMSE .*over|stage .* has" "$OUT/test.log" | head -150
if [ "${SKIP_SAN:-0}" != 1 ]; then
  echo "== sanitizer" > "$OUT/sanitizer.log"
  for tool in memcheck racecheck; do
    if [ $tool = racecheck ]; then filt=${RACE_FILTER:-GpuSanitize.*}; else filt=${MEM_FILTER:-*}; fi
    echo "$tool on --gtest_filter=$filt" >> "$OUT/sanitizer.log"
    timeout ${SAN_TIMEOUT:-150} "$SAN" --tool $tool --print-limit 20 ./carry/test_gpu_forward --gtest_filter="$filt" > "$OUT/san_$tool.txt" 2>&1
    echo "$tool rc=$? : $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|hazard' "$OUT/san_$tool.txt" | tail -3 | tr '\n' ' ')" | tee -a "$OUT/sanitizer.log"
  done
  grep -E "Invalid|Race|hazard|Error" "$OUT"/san_*.txt | head -20 >> "$OUT/sanitizer.log"
  rm -f "$OUT"/san_*.txt
fi
echo "== ours"; timeout 120 ./carry/dplr_bench_gpu "$OUT/bench.json" 2>&1 | tee -a "$OUT/bench.log"
[ "${SKIP_FLA:-0}" = 1 ] && exit 0
echo "== fla"; PYTHONPATH=$PWD/carry/fla_src timeout ${FLA_TIMEOUT:-200} python3 bench/fla_peer.py "$OUT/fla.json" > "$OUT/fla.log" 2>&1; echo "fla rc=$?"; grep -v Warning "$OUT/fla.log" | tail -25
