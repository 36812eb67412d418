#!/usr/bin/env bash
# One device call that times builds of the same tree against each other (A/B), for kernel changes whose effect only
# the GPU can tell: each binary carried as carry/NAME.xz (a stripped `dplr`, xz -6) is unpacked and, in the order
# given by BINS (default: every carried one, `dplr` first), run through
#   ncu: the durations, executed instructions and issue rate of the training step's first 8 tensor-core kernels
#        (the forward's A_WY and h+o, the backward's recompute and stages; `dplr bench --gpu --gpu-part training`);
#   bench: `dplr bench --gpu --gpu-part training` (medians of CUDA-event timings, the step and every stage).
# GPU_TESTS="test_gpu_backward ..." also runs those carried test binaries first. Results: $OUT/ab.tar.gz (logs,
# ncu text, bench JSON) and, printed, one summary (kernel durations and bench medians side by side). Build here:
#   cmake --build build-gpu --target dplr && strip -o /tmp/dplr build-gpu/cli/dplr && xz -6 -c /tmp/dplr > carry/NAME.xz
# then run with carry=["carry"] (64 MiB in all: about 7 MB a binary). PARTS="ncu bench" (default) picks the parts.
# CHECK_BIN=NAME runs that binary's `dplr check --regressions`; SAN_TESTS="test_gpu_backward .." runs compute-sanitizer
# memcheck and racecheck on those test binaries' GpuSanitize cases. Order: tests, check, sanitizer, the timings, fla.
# With carry/fla_src (`git archive HEAD fla | tar -x -C carry/fla_src` from its checkout; or packed,
# carry/fla_src.tar.xz) fla's training step runs on the same card: it starts first in the background and compiles
# (Triton, minutes) while the tests, check and sanitizer run; its autotuning runs kernels, so our timings wait until it
# says it has compiled (FLA_READY_TIMEOUT, default 300 s), and it times only after them, so that one program at a time
# uses the GPU while timing (FLA=0 skips it; FLA_TIMEOUT, default 300 s, after our timings). Results are packed after
# every part, so that a call cut off at its limit keeps what ran.
set -u
OUT=${OUT:-out/device}
R=$(mktemp -d)
mkdir -p "$OUT"
[ -f carry/fla_src.tar.xz ] && tar -C carry -xJf carry/fla_src.tar.xz  # fla packed small for the 64 MiB carry
for x in carry/*.xz; do
  [[ $x == *.tar.xz ]] && continue
  xz -dc "$x" > "${x%.xz}" && chmod +x "${x%.xz}"
done
others=$(ls carry/*.xz | grep -v '\.tar\.xz$' | sed 's|carry/||; s|\.xz$||' | grep -v -e '^test_' -e '^dplr$' | sort | tr '\n' ' ')
bins=${BINS:-dplr $others}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$R/device.txt"
t0=$(date +%s)
pack() { tar -czf "$OUT/ab.tar.gz" -C "$R" .; }  # after every part: a call cut off at its time limit keeps what ran
source scripts/fla-peer.sh
fla_start "$R" FLA_PEER_ACCURACY=0 FLA_PEER_TIMING=0
for t in ${GPU_TESTS:-}; do
  timeout 200 "./carry/$t" > "$R/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$R/$t.log" | tr '\n' ' ')" | tee -a "$R/summary.txt"
done
pack
if [ -n "${CHECK_BIN:-}" ]; then  # the final build's `dplr check` (the corpus by its path here)
  timeout 200 "./carry/$CHECK_BIN" check --regressions tests/data/regressions --report "$R/check-report.json" > "$R/check.log" 2>&1
  echo "== $CHECK_BIN check rc=$? t=$(( $(date +%s) - t0 )) s" | tee -a "$R/summary.txt"
  grep -E "^skipped|^verdict" "$R/check.log" | tee -a "$R/summary.txt"
fi
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for t in ${SAN_TESTS:-}; do  # every kernel of the test binary's GpuSanitize cases under memcheck and racecheck
  for tool in memcheck racecheck; do
    timeout 150 "$SAN" --tool $tool --print-limit 20 "./carry/$t" --gtest_filter='GpuSanitize*' > "$R/san-$t-$tool.txt" 2>&1
    echo "$t $tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$R/san-$t-$tool.txt" | tail -1) t=$(( $(date +%s) - t0 )) s" |
      tee -a "$R/summary.txt"
  done
done
pack
compiled=$(fla_wait_compiled)
[ -n "$compiled" ] && echo "$compiled t=$(( $(date +%s) - t0 )) s" | tee -a "$R/summary.txt"
for b in $bins; do
  if [[ ${PARTS:-ncu bench} == *ncu* ]]; then
    timeout 150 ncu --clock-control none --cache-control none -k regex:mma_kernel --launch-count 8 \
      --metrics gpu__time_duration.sum,smsp__inst_executed.sum,smsp__issue_active.avg.per_cycle_active \
      "./carry/$b" bench --gpu --gpu-part training --json "$R/ncu-$b.json" > "$R/ncu-$b.txt" 2>&1
    echo "== $b: ncu rc=$? t=$(( $(date +%s) - t0 )) s" | tee -a "$R/summary.txt"
    grep -E "Context|gpu__time" "$R/ncu-$b.txt" | sed -E 's/\(.*Context.*//; s/ +gpu__time_duration.sum +us +/  us /' |
      paste - - | sed -E 's/^ +//' | cut -c1-140 | tee -a "$R/summary.txt"
  fi
  if [[ ${PARTS:-ncu bench} == *bench* ]]; then
    timeout 300 "./carry/$b" bench --gpu --gpu-part training --json "$R/bench-$b.json" > "$R/bench-$b.log" 2>&1
    echo "== $b: bench rc=$? t=$(( $(date +%s) - t0 )) s" | tee -a "$R/summary.txt"
    grep -E "^chunk fwd\+bwd|chunk bwd alone|bwd stage|bwd A_bwd" "$R/bench-$b.log" | cut -c1-100 | tee -a "$R/summary.txt"
  fi
  pack
done
fla_finish | tee -a "$R/summary.txt"
if [ -n "$fla_pid" ]; then
  echo "== fla t=$(( $(date +%s) - t0 )) s" | tee -a "$R/summary.txt"
  grep -E "median|SKIPPED|Error" "$R/fla.log" | tee -a "$R/summary.txt"
fi
pack
