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
set -u
OUT=${OUT:-out/device}
R=$(mktemp -d)
mkdir -p "$OUT"
for x in carry/*.xz; do xz -dc "$x" > "${x%.xz}" && chmod +x "${x%.xz}"; done
others=$(ls carry/*.xz | sed 's|carry/||; s|\.xz$||' | grep -v -e '^test_' -e '^dplr$' | sort | tr '\n' ' ')
bins=${BINS:-dplr $others}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$R/device.txt"
t0=$(date +%s)
for t in ${GPU_TESTS:-}; do
  timeout 200 "./carry/$t" > "$R/$t.log" 2>&1
  echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "$R/$t.log" | tr '\n' ' ')" | tee -a "$R/summary.txt"
done
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
done
tar -czf "$OUT/ab.tar.gz" -C "$R" .
