#!/usr/bin/env bash
# One call on the device machine (GPU): `dplr check` (the CPU part and the GPU sweep, once per seed), the GPU
# tests, `dplr bench --gpu`, fla on the same card when its package is carried, and compute-sanitizer. Build here:
#   cmake -S . -B build-gpu -G Ninja -DDPLR_STATIC_DEPS=ON && cmake --build build-gpu --target dplr test_gpu_forward test_gpu_recurrent_bwd
#   mkdir -p carry && cp build-gpu/cli/dplr build-gpu/tests/gpu/test_gpu_*[!.]* carry/
# fla: `git archive HEAD fla | tar -x -C carry/fla_src` from its checkout; it starts first, in the background, and
# compiles (Triton, minutes) while our parts run; our bench waits until it has compiled (its autotuning runs
# kernels; FLA_READY_TIMEOUT) and it times only after our bench, so that the GPU is timed by one program at a
# time. With carry/fla_cases (case files from `dplr gen`) it also records fla's outputs and gradients on them
# (bench/fla_record.py) for `dplr verify` here. Run with carry=["carry"]. Results go to $OUT (default out/device),
# packed into one device.tar.gz. Parts: SKIP_CHECK=1, SKIP_TESTS=1, SKIP_BENCH=1, SKIP_FLA=1,
# SKIP_SAN=1, SKIP_PLANTED=1 (needs carry/dplr-planted, a -DDPLR_PLANT_DEFECTS=ON build); BENCH_PART=forward|training
# (`dplr bench --gpu --gpu-part`; default all); CHECK_SEEDS="7 11" (default: the committed sweep's seeds only);
# CHECK_PROPERTY=N (the property sweep, off by default; CHECK_PROPERTY_SEEDS="7 8"); GPU_TESTS="test_gpu_forward ..."
# (default: every GPU test binary carried); SAN_TESTS (the binaries compute-sanitizer runs; default GPU_TESTS).
set -u
OUT=${OUT:-out/device}
RESULTS=$(mktemp -d)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$RESULTS/device.txt"
record_pid=""
source scripts/fla-peer.sh
if [ -d carry/fla_src ] && [ "${SKIP_FLA:-0}" != 1 ]; then
  echo "== fla, same card (background: compiles now, times after our bench)"
  fla_start "$RESULTS" FLA_PEER_ACCURACY="${FLA_PEER_ACCURACY:-0}"
  if [ -d carry/fla_cases ]; then
    PYTHONPATH=$PWD/carry/fla_src PYTHONUNBUFFERED=1 python3 bench/fla_record.py carry/fla_cases "$RESULTS/fla_recorded" \
      > "$RESULTS/fla_record.log" 2>&1 &
    record_pid=$!
  fi
fi
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  for seed in ${CHECK_SEEDS:-default}; do
    echo "== dplr check (seed $seed)"
    seed_arg=()
    [ "$seed" != default ] && seed_arg=(--seed "$seed")
    # The corpus by its path here: the binary's compiled-in source path is the build machine's.
    ./carry/dplr check "${seed_arg[@]}" --regressions tests/data/regressions --report "$RESULTS/check-report-$seed.json" \
      > "$RESULTS/check-$seed.log" 2>&1
    echo "check rc=$?" | tee -a "$RESULTS/check-$seed.log"
    grep -E "^\[(fail|error)|skipped|verdict|certified to" "$RESULTS/check-$seed.log" | head -20
  done
fi
# The property sweep (verify/property_sweep.hpp), opt in: CHECK_PROPERTY=N cases at each seed of
# CHECK_PROPERTY_SEEDS (default 7; three seeds at a time, 5 threads each), within CHECK_PROPERTY_BUDGET seconds
# (300); failing cases land in $RESULTS/failed-cases/; bench/limit_calibration.py prints the worst figures per
# tensor over every seed's report (the numbers strict's limits are set from).
if [ "${CHECK_PROPERTY:-0}" != 0 ]; then
  for seed in ${CHECK_PROPERTY_SEEDS:-7}; do
    echo "== dplr check --property $CHECK_PROPERTY --seed $seed"
    ( ./carry/dplr check --property "$CHECK_PROPERTY" --seed "$seed" --threads 5 \
        --time-budget "${CHECK_PROPERTY_BUDGET:-300}" --report "$RESULTS/property-report-$seed.json" \
        > "$RESULTS/property-$seed.log" 2>&1; echo "property rc=$?" >> "$RESULTS/property-$seed.log" ) &
    while [ "$(jobs -rp | wc -l)" -ge 3 ]; do sleep 1; done
  done
  wait
  for seed in ${CHECK_PROPERTY_SEEDS:-7}; do
    grep -E "^\[(fail|error)|shrunk in|replay:|skipped|positions run|verdict|property rc" "$RESULTS/property-$seed.log" | head -20
  done
  python3 bench/limit_calibration.py "$RESULTS"/property-report-*.json > "$RESULTS/property-calibration.txt" 2>&1
  head -40 "$RESULTS/property-calibration.txt"
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  for t in ${GPU_TESTS:-test_gpu_forward test_gpu_recurrent_bwd}; do
    echo "== gpu tests: $t"
    timeout 240 ./carry/$t > "$RESULTS/$t.log" 2>&1
    echo "$t rc=$?" | tee -a "$RESULTS/$t.log"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) " "$RESULTS/$t.log" | head -10
  done
fi
[ -n "$record_pid" ] && { wait "$record_pid"; echo "fla record rc=$?"; tail -4 "$RESULTS/fla_record.log"; }
if [ -x carry/dplr-planted ] && [ "${SKIP_PLANTED:-0}" != 1 ]; then
  # Each planted defect (a -DDPLR_PLANT_DEFECTS=ON build) against the fixed GPU sweep, three at a time: which cases
  # fail, and the first of them (bench/planted_summary.py). Reports are summarised and not kept (9 MB each).
  echo "== planted defects, the fixed GPU sweep"
  for d in ${PLANTED:-head-stride sequence-start drop-last-chunk missing-barrier bf16-state factored-decay bwd-head-offset bwd-state-bf16 bwd-dgk-exclusive recurrent-bwd-state-bf16}; do
    ( timeout 200 ./carry/dplr-planted check --gpu-only --threads 5 --plant-defect "$d" --report "$RESULTS/planted-$d.json" \
        > "$RESULTS/planted-$d.log" 2>&1; echo "rc=$?" >> "$RESULTS/planted-$d.log" ) &
    while [ "$(jobs -rp | wc -l)" -ge 3 ]; do sleep 1; done
  done
  wait
  python3 bench/planted_summary.py "$RESULTS"/planted-*.json | tee "$RESULTS/planted-summary.txt"
  rm -f "$RESULTS"/planted-*.json
fi
if [ -x carry/dplr-planted ] && [ "${PLANTED_PROPERTY:-0}" != 0 ]; then
  # Each planted defect against the property sweep (PLANTED_PROPERTY positions at PLANTED_SEED, within PLANTED_BUDGET
  # seconds), three at a time: where it is first found, and the shrunk case it writes.
  echo "== planted defects, the property sweep"
  for d in ${PLANTED:-head-stride sequence-start drop-last-chunk missing-barrier bf16-state factored-decay bwd-head-offset bwd-state-bf16 bwd-dgk-exclusive recurrent-bwd-state-bf16}; do
    mkdir -p "$RESULTS/prop-$d"
    ( timeout 200 ./carry/dplr-planted check --property "$PLANTED_PROPERTY" --seed "${PLANTED_SEED:-1}" --threads 5 \
        --time-budget "${PLANTED_BUDGET:-60}" --plant-defect "$d" --report "$RESULTS/prop-$d/report.json" \
        > "$RESULTS/prop-$d.log" 2>&1; echo "rc=$?" >> "$RESULTS/prop-$d.log" ) &
    while [ "$(jobs -rp | wc -l)" -ge 3 ]; do sleep 1; done
  done
  wait
  python3 bench/planted_summary.py "$RESULTS"/prop-*/report.json | tee "$RESULTS/planted-property-summary.txt"
  grep -HE "failed case written|replay:|positions run" "$RESULTS"/prop-*.log | tee -a "$RESULTS/planted-property-summary.txt" | head -30
  rm -f "$RESULTS"/prop-*/report.json
fi
[ "${SKIP_BENCH:-0}" != 1 ] && fla_wait_compiled
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== dplr bench --gpu"
  ./carry/dplr bench --gpu --gpu-part "${BENCH_PART:-all}" --json "$RESULTS/bench.json" > "$RESULTS/bench.log" 2>&1
  echo "bench rc=$?" | tee -a "$RESULTS/bench.log"
  if [ "${BENCH_PART:-all}" = training ]; then  # the training steps and every backward stage
    grep -E "median|bwd stages|rc=|wrong" "$RESULTS/bench.log" | head -40
  else
    grep -E "median" "$RESULTS/bench.log" | grep -v "stage" | head -24
  fi
fi
fla_finish
if [ -n "$fla_pid" ]; then
  grep -v Warning "$RESULTS/fla.log" | tail -14
fi
if [ "${SKIP_SAN:-0}" != 1 ]; then
  echo "== compute-sanitizer (every kernel once)"
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for t in ${SAN_TESTS:-${GPU_TESTS:-test_gpu_forward test_gpu_recurrent_bwd}}; do
    for tool in memcheck racecheck; do
      # Kept (gzip): a summary with warnings needs the hazards' kernels and addresses to be read later.
      timeout 150 "$SAN" --tool $tool --print-limit 20 ./carry/$t --gtest_filter='GpuSanitize*' > "$RESULTS/san-$t-$tool.txt" 2>&1
      echo "$t $tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$RESULTS/san-$t-$tool.txt" | tail -1)" | tee -a "$RESULTS/sanitizer.log"
      gzip -f "$RESULTS/san-$t-$tool.txt"
    done
  done
fi
# Back in files of at most 16 MiB (the device tool's limit): the recordings apart from the rest.
tar -czf "$OUT/device.tar.gz" -C "$RESULTS" --exclude=fla_recorded .
if [ -d "$RESULTS/fla_recorded" ]; then
  (cd "$RESULTS/fla_recorded" && ls | split -n l/3 - "$RESULTS/part" && for p in "$RESULTS"/parta?; do
    tar -czf "$OUT/fla_recorded_$(basename "$p").tar.gz" -T "$p"; done)
fi
