#!/usr/bin/env bash
# Builds the libFuzzer targets for the tensor-file parsers, the case checks and the policy parsers (fuzz/fuzz_*.cpp) with clang++
# -fsanitize=fuzzer,address,undefined into build-fuzz/, then runs each for SECONDS (default 20) starting
# from its committed seed corpus fuzz/corpus/<target>/ (read only; new inputs go to build-fuzz/corpus/).
# Prints a summary; exits non-zero if any target found a crash, a sanitizer report, an escaped exception
# or a broken property (the crashing input is left in build-fuzz/artifacts/<target>/).
#
#   scripts/run-fuzzers.sh [SECONDS]        needs clang++ and libclang-rt-dev (scripts/install-deps.sh)
#   CXX_FUZZ=clang++-16 scripts/run-fuzzers.sh 60
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/build-fuzz"
cxx="${CXX_FUZZ:-clang++}"
targets=(safetensors npy npz case policy)

if ! command -v "$cxx" >/dev/null; then
  echo "run-fuzzers: $cxx not found (scripts/install-deps.sh installs clang and libclang-rt-dev)" >&2
  exit 2
fi
case "$seconds" in ''|*[!0-9]*) echo "run-fuzzers: SECONDS must be a whole number, got '$seconds'" >&2; exit 2;; esac

# fmt is used header-only; nlohmann/json and zlib come from the system, as in the CMake build.
common=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DFMT_HEADER_ONLY -I"$root")
mkdir -p "$out/obj"

# The library sources, compiled once with coverage instrumentation (fuzzer-no-link), in parallel.
# fuzz_case needs the case checks (reference/problem.cpp), fuzz_policy the policy parsers (verify/tolerance.cpp).
sources=("$root"/io/*.cpp "$root"/core/*.cpp "$root/reference/problem.cpp" "$root/verify/tolerance.cpp"
         "$root/verify/metrics.cpp")
objects=()
for src in "${sources[@]}"; do
  objects+=("$out/obj/$(basename "$(dirname "$src")")_$(basename "${src%.cpp}").o")
done
echo "run-fuzzers: compiling ${#sources[@]} library sources with $cxx"
printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -I{} sh -c '
  src="$1"; shift; out="$1"; shift
  obj="$out/obj/$(basename "$(dirname "$src")")_$(basename "${src%.cpp}").o"
  exec "$@" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$obj"
' _ {} "$out" "$cxx" "${common[@]}"

for t in "${targets[@]}"; do
  echo "run-fuzzers: linking fuzz_$t"
  "$cxx" "${common[@]}" -fsanitize=fuzzer,address,undefined "$root/fuzz/fuzz_$t.cpp" "${objects[@]}" -lz \
    -o "$out/fuzz_$t"
done

declare -A status runs coverage
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  log="$out/fuzz_$t.log"
  echo "run-fuzzers: fuzz_$t for ${seconds}s (log: $log)"
  # Inputs up to 64 KiB; 2 GiB of memory is far more than any input may justify.
  set +e
  "$out/fuzz_$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -timeout=10 -print_final_stats=1 -dict="$root/fuzz/$t.dict" -artifact_prefix="$out/artifacts/$t/" \
    "$out/corpus/$t" "$root/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs[$t]="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  coverage[$t]="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)"
  if [ "$rc" -eq 0 ]; then
    status[$t]="ok"
  else
    status[$t]="FAILED (exit $rc)"
    failed=1
    echo "---- fuzz_$t: last lines of $log" >&2
    tail -40 "$log" >&2
  fi
done

echo
echo "run-fuzzers summary (${seconds}s each)"
printf '  %-20s %-18s %12s %8s\n' target result executions edges
for t in "${targets[@]}"; do
  printf '  %-20s %-18s %12s %8s\n' "fuzz_$t" "${status[$t]}" "${runs[$t]:-?}" "${coverage[$t]:-?}"
done
if [ "$failed" -ne 0 ]; then
  echo "run-fuzzers: a target failed; reproduce with build-fuzz/fuzz_<target> build-fuzz/artifacts/<target>/crash-*" >&2
fi
exit "$failed"
