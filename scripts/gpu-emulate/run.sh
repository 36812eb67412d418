#!/usr/bin/env bash
# Builds and runs the host emulation of the staged chunk backward (backward_check.cpp): the real gpu/*.cu
# kernels, rewritten into host C++ (rewrite.py) and run one std::thread per CUDA thread (emu.hpp), against the
# exact stage oracles and the exact reference. For checking index logic and arithmetic where there is no GPU; it
# says nothing about races, memory bounds, shared-memory limits or the device's own exp2f/ldexpf, so it is not
# a substitute for tests/gpu on a device. DPLR_EMULATE_SANITIZE=address builds it with AddressSanitizer (reads and
# writes past the end of an input, an output or a block's shared memory: a partial memcheck, since the workspace
# is one allocation), =thread with ThreadSanitizer (two threads of a block touching one address with no barrier
# between: racecheck inside a block; blocks run one after another, so nothing across blocks). Needs a configured
# build (the reference libraries) and the CUDA headers. DPLR_EMULATE_DIR (default /tmp/dplr-gpu-emulate) is where
# the rewritten sources and objects go: give each worktree its own. DPLR_EMULATE_PLANT=NAME (a planted defect,
# gpu::planted_defect_name: bwd-state-bf16, ...) compiles the kernels with -DDPLR_PLANT_DEFECTS (objects in their own
# directory) and runs every case with that defect, which must then fail. Usage: scripts/gpu-emulate/run.sh [case index [chunk size]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$repo/${DPLR_BUILD_DIR:-build}
sanitize=${DPLR_EMULATE_SANITIZE:-}
plant=${DPLR_EMULATE_PLANT:-}
out=${DPLR_EMULATE_DIR:-/tmp/dplr-gpu-emulate}${sanitize:+-$sanitize}${plant:+-planted}
mkdir -p "$out/obj"
cmake --build "$build" --target dplr_reference dplr_io >/dev/null
python3 "$here/rewrite.py" "$repo" "$out" checks.cu chunk_offsets.cu chunk_A.cu chunk_WY.cu chunk_h.cu chunk_o.cu \
  chunk_cumsum.cu chunk_forward.cu chunk_A_WY.cu chunk_ho.cu chunk_ho_fma.cu chunk_ho_mma.cu chunk_o_bwd.cu chunk_o_bwd_mma.cu chunk_h_bwd.cu chunk_h_bwd_mma.cu chunk_WY_bwd.cu chunk_WY_bwd_mma.cu chunk_A_bwd.cu chunk_A_bwd_mma.cu chunk_cumsum_bwd.cu \
  chunk_backward.cu
cp "$here/emu.hpp" "$out/"
# -I$out first: its gpu/common.cuh (rewritten) shadows the repository's.
flags=(-O2 -std=c++20 -I"$out" -I"$repo" -isystem /usr/include/eigen3 -isystem /usr/local/cuda/include -DFMT_HEADER_ONLY=1 -w -pthread)
link=()
[ -n "$plant" ] && flags+=(-DDPLR_PLANT_DEFECTS)
if [ -n "$sanitize" ]; then
  flags+=(-fsanitize="$sanitize" -g -DDPLR_EMULATE_EXACT_BUFFERS)
  link+=(-fsanitize="$sanitize")
fi
# ccache where installed: a rebuild after one kernel changed recompiles that file only.
cxx=(g++)
command -v ccache >/dev/null && cxx=(ccache g++)
for f in "$out"/*.cpp "$here/backward_check.cpp"; do
  "${cxx[@]}" "${flags[@]}" -c "$f" -o "$out/obj/$(basename "$f" .cpp).o" &
  while [ "$(jobs -r | wc -l)" -ge 2 ]; do sleep 1; done
done
wait
g++ -pthread "${link[@]}" "$out"/obj/*.o "$build/reference/libdplr_reference.a" "$build/io/libdplr_io.a" "$build/core/libdplr_core.a" -lqd -lflint-arb -lflint -lmpfr -lgmp -lz \
  -L/usr/local/cuda/targets/x86_64-linux/lib -lcudart_static -ldl -lrt -o "$out/backward_check"
"$out/backward_check" "$@"
