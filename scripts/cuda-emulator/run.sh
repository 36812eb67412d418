#!/usr/bin/env bash
# Runs gpu/recurrent_bwd.cu's kernels on the CPU (README.md) on the cases of recurrent_bwd_driver.cpp, in three
# thread orders, checks every gradient against the exact reference with test_gpu_recurrent_bwd's bars and the three
# orders' outputs against each other bitwise. Needs a configured and built tree (BUILD, default build/: the
# reference, core and harness libraries; scripts/configure.sh && cmake --build build --target dplr).
# ASAN=1 also builds with AddressSanitizer and runs CASES there. CASES="0 3" runs only those cases. HARNESS=1 also links
# the built tests/gpu/test_gpu_recurrent_bwd and cli/dplr objects against the emulated kernels and fake_cudart.cpp
# (host memory for cudaMalloc and friends) and runs that test binary and `dplr gradcheck --gpu` (fp32 and bf16 cases).
# DPLR_EMULATE_PLANT=NAME (a planted defect, e.g. recurrent-bwd-state-bf16) compiles with -DDPLR_PLANT_DEFECTS and runs
# every case with it, which must then fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=$(cd "${BUILD:-build}" && pwd)
WORK=$(mktemp -d)
EMU=$ROOT/scripts/cuda-emulator
FLAGS=(-std=c++20 -O2 -I"$EMU/include" -I"$ROOT" -isystem /usr/local/cuda/include -isystem /usr/include/eigen3
       -DFMT_HEADER_ONLY=1 -w)
[ -n "${DPLR_EMULATE_PLANT:-}" ] && FLAGS+=(-DDPLR_PLANT_DEFECTS)
LIBS=("$BUILD/verify/libdplr_gpu_harness.a" "$BUILD/reference/libdplr_reference.a" "$BUILD/core/libdplr_core.a"
      -lqd -lmpfr -lgmp /usr/local/cuda/lib64/libcudart_static.a -ldl -lrt -lpthread)
python3 "$EMU/launches.py" gpu/recurrent_bwd.cu "$WORK/recurrent_bwd.cpp"
cp gpu/checks.cu "$WORK/checks.cpp"
build() {  # output, extra flags
  local out=$1; shift
  for f in "$WORK/recurrent_bwd.cpp" "$WORK/checks.cpp" "$EMU/emu.cpp" "$EMU/recurrent_bwd_driver.cpp"; do
    g++ "${FLAGS[@]}" "$@" -c "$f" -o "$WORK/$(basename "$f" .cpp)$out.o" &
  done
  wait
  g++ "$@" -o "$WORK/emu$out" "$WORK"/*"$out".o "${LIBS[@]}"
}
build ""
mkdir -p "$WORK/dumps"
status=0
for order in 0 1 2; do  # forward, reverse, shuffled
  echo "== thread order $order"
  # shellcheck disable=SC2086
  if [ -n "${CASES:-}" ]; then for c in $CASES; do EMU_ORDER=$order EMU_DUMP=$WORK/dumps/o$order "$WORK/emu" "$c" || status=1; done
  else EMU_ORDER=$order EMU_DUMP=$WORK/dumps/o$order "$WORK/emu" || status=1; fi
done
for f in "$WORK"/dumps/o0.*; do
  s=${f##*/o0.}
  if cmp -s "$f" "$WORK/dumps/o1.$s" && cmp -s "$f" "$WORK/dumps/o2.$s"; then echo "case seed $s: the three orders agree bitwise"
  else echo "case seed $s: the thread orders DISAGREE (a race)"; status=1; fi
done
if [ "${ASAN:-0}" = 1 ]; then
  build _asan -O1 -g -fsanitize=address -fno-omit-frame-pointer
  for c in ${CASES:-1 5 6 7 8 9 10}; do
    ASAN_OPTIONS=detect_stack_use_after_return=0:detect_leaks=0 "$WORK/emu_asan" "$c" || status=1
  done
fi
if [ "${HARNESS:-0}" = 1 ]; then
  g++ "${FLAGS[@]}" -c "$EMU/fake_cudart.cpp" -o "$WORK/fake_cudart.o"
  KERNELS=("$WORK/recurrent_bwd.o" "$WORK/checks.o" "$WORK/emu.o" "$WORK/fake_cudart.o")
  libs_of() { grep -A3 "^build $1:" "$BUILD/build.ninja" | grep -o "LINK_LIBRARIES = .*" | sed 's/LINK_LIBRARIES = //'; }
  # The first definition wins: the emulated kernels and runtime calls over libdplr_gpu.a's and cudart's.
  (cd "$BUILD" && g++ -Wl,--allow-multiple-definition -o "$WORK/test_gpu_recurrent_bwd" \
     tests/gpu/CMakeFiles/test_gpu_recurrent_bwd.dir/test_gpu_recurrent_bwd.cpp.o "${KERNELS[@]}" \
     $(libs_of tests/gpu/test_gpu_recurrent_bwd))
  (cd "$BUILD" && g++ -Wl,--allow-multiple-definition -o "$WORK/dplr" cli/CMakeFiles/dplr.dir/*.o "${KERNELS[@]}" \
     $(libs_of cli/dplr))
  "$WORK/test_gpu_recurrent_bwd" || status=1
  for dtype in f32 bf16; do
    "$WORK/dplr" gen --shape 1,70,2,8,8 --dtype $dtype -o "$WORK/case_$dtype.safetensors" > /dev/null
    "$WORK/dplr" gradcheck "$WORK/case_$dtype.safetensors" --gpu --precision dd || status=1
  done
fi
rm -rf "$WORK"
exit $status
