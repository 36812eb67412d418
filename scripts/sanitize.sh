#!/usr/bin/env bash
# The CPU tests once more under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/), and the threaded
# reference under ThreadSanitizer on a short case (build-tsan/). CPU only (DPLR_ENABLE_CUDA=OFF), -O1, the
# parts the CPU tests need (no gpu/, bench/, cli/), sharing ccache with the main build where it is set up.
#   scripts/sanitize.sh            both;  SANITIZE_SKIP_TSAN=1 or SANITIZE_SKIP_ASAN=1 leaves one out
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# -Wno-maybe-uninitialized: at -O1 with the sanitizers g++ 12 warns falsely inside libstdc++'s std::regex and
# std::function (10 warnings from tests/verify/report_test.cpp); the Release build keeps the warning and prints none.
configure() {  # folder, sanitizer flags
  cmake -S . -B "$1" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Debug -DDPLR_ENABLE_CUDA=OFF \
    "-DDPLR_SKIP_PARTS=gpu;bench;cli" "-DDPLR_SKIP_TESTS=cli;gpu" \
    "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g -fno-omit-frame-pointer -Wno-maybe-uninitialized $2" \
    "-DCMAKE_EXE_LINKER_FLAGS=$2" >/dev/null
}

if [ "${SANITIZE_SKIP_ASAN:-0}" != "1" ]; then
  echo "sanitize: AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  configure build-asan "-fsanitize=address,undefined -fno-sanitize-recover=undefined"
  cmake --build build-asan -j "$jobs"
  # detect_leaks stays on; the suppressions file says why each entry is there. Left out, to keep CI's time
  # bounded: the three longest CPU tests (23 s, 10 s and the MPFR-400 certification check without
  # sanitizers), which run the same reference and chunk code as the shorter tests, at larger sizes; and
  # package.consumer, which installs this (CLI-less) tree and builds a project against it: packaging, not memory.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     LSAN_OPTIONS="suppressions=$PWD/../scripts/sanitizers/lsan.supp" UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs" -L cpu --timeout 600 \
       -E '^(package\.consumer|ChunkVsRecurrence\.(EveryChunkSizeAndDistribution|RandomShapesAndDistributionsAt128Bits)|Precision\.CertifiedBitsTellTheTruth)$')
fi

if [ "${SANITIZE_SKIP_TSAN:-0}" != "1" ]; then
  echo "sanitize: ThreadSanitizer on the threaded reference (build-tsan/)"
  configure build-tsan "-fsanitize=thread"
  cmake --build build-tsan -j "$jobs" --target test_reference
  # Structure.CheckpointingAndThreadsChangeNoBit runs the reference on 1 and several threads (short cases).
  TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/scripts/sanitizers/tsan.supp" \
    build-tsan/tests/reference/test_reference --gtest_filter='Structure.CheckpointingAndThreadsChangeNoBit'
fi
