# Sourced by scripts/device-ab.sh and scripts/device-check.sh: fla (bench/fla_peer.py) on the same card as our
# kernels, one program timing the GPU at a time. fla_start compiles fla in the background (Triton, minutes) while the
# caller runs its untimed parts; its autotuning runs kernels, so fla_wait_compiled waits until fla_peer.py creates its
# ready file (FLA_READY_TIMEOUT, default 300 s) before the caller times; fla_finish lets fla time (the wait file) and
# waits for it to end (FLA_TIMEOUT, default 300 s). Without carry/fla_src, or with FLA=0, each is a no-op.
fla_pid=""
fla_flag=$(mktemp -u)
fla_ready=$(mktemp -u)
# fla_start DIR [VAR=VALUE ...]: DIR/fla.json and DIR/fla.log; the extra assignments go to fla_peer.py's environment.
fla_start() {
  local dir=$1
  shift
  [ -d carry/fla_src ] && [ "${FLA:-1}" != 0 ] || return 0
  env FLA_PEER_WAIT_FILE="$fla_flag" FLA_PEER_READY_FILE="$fla_ready" PYTHONPATH="$PWD/carry/fla_src" PYTHONUNBUFFERED=1 \
    "$@" setsid python3 bench/fla_peer.py "$dir/fla.json" > "$dir/fla.log" 2>&1 &
  fla_pid=$!
}
fla_wait_compiled() {
  [ -n "$fla_pid" ] || return 0
  for _ in $(seq "${FLA_READY_TIMEOUT:-300}"); do [ -e "$fla_ready" ] || ! kill -0 "$fla_pid" 2>/dev/null && break; sleep 1; done
  echo "== fla compiled: $([ -e "$fla_ready" ] && echo yes || echo 'NO (timings after this may share the GPU)')"
}
fla_finish() {
  touch "$fla_flag"
  [ -n "$fla_pid" ] || return 0
  for _ in $(seq "${FLA_TIMEOUT:-300}"); do kill -0 "$fla_pid" 2>/dev/null || break; sleep 1; done
  kill -- -"$fla_pid" 2>/dev/null && echo "fla: stopped at FLA_TIMEOUT"
  return 0
}
