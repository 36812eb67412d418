#!/usr/bin/env bash
# A training-scale fwd+bwd recording to time `dplr verify` on (issue 15): B8 T4096 H16 K=V=64 (524,288 token-heads),
# bf16 inputs from `dplr gen` (fla), its outputs and gradients from the double reference rounded to f32 (any
# implementation's answer would do: the cost timed is the exact reference's, not the comparison's).
#   scripts/training-scale-recording.sh DPLR OUT_DIR [SHAPE]      (SHAPE default 8,4096,16,64,64)
# then, on THREADS cores:
#   /usr/bin/time -v DPLR verify OUT_DIR/recording.safetensors --precision td --estimate extrapolated --threads THREADS
# Needs python3 with numpy and safetensors. Disk: about 2.5 GB in OUT_DIR at the default shape.
set -euo pipefail
dplr=$1 out=$2 shape=${3:-8,4096,16,64,64}
mkdir -p "$out"
"$dplr" gen --shape "$shape" --dtype bf16 -o "$out/case.safetensors"
"$dplr" ref "$out/case.safetensors" --precision double --no-certify -o "$out/double.safetensors"
python3 - "$out" <<'PY'
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
out = sys.argv[1]
# The inputs byte for byte (numpy has no bf16, so they are not decoded) and the results added, under a
# safetensors header of our own.
with open(f"{out}/case.safetensors", "rb") as f:
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    data = f.read()
metadata = header.get("__metadata__", {})
entries = {k: v for k, v in header.items() if k != "__metadata__"}
blobs = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in entries.items()}
with safe_open(f"{out}/double.safetensors", "np") as f:
    for name in f.keys():
        a = f.get_tensor(name).astype(np.float32)
        entries[name] = {"dtype": "F32", "shape": list(a.shape)}
        blobs[name] = a.tobytes()
        del a
offset, new_header = 0, {"__metadata__": dict(metadata, producer="scripts/training-scale-recording.sh (double reference, f32)")}
for name in sorted(blobs):
    new_header[name] = {"dtype": entries[name]["dtype"], "shape": entries[name]["shape"],
                        "data_offsets": [offset, offset + len(blobs[name])]}
    offset += len(blobs[name])
text = json.dumps(new_header).encode()
text += b" " * (-len(text) % 8)
with open(f"{out}/recording.safetensors", "wb") as f:
    f.write(len(text).to_bytes(8, "little")); f.write(text)
    for name in sorted(blobs): f.write(blobs[name])
print(f"{out}/recording.safetensors")
PY
rm -f "$out/double.safetensors"
