#!/usr/bin/env python3
"""fla_record.py: runs flash-linear-attention on case files written by `dplr gen` and records what it returns.

For each IN/*.safetensors (the contract's names: q k v a b gk [h0] [do dht], metadata `scale`), runs fla's
chunk_dplr_delta_rule (chunk 16, forward and, where do is present, backward of (o, ht) with (do, dht)) and its
fused_recurrent_dplr_delta_rule (forward), and writes OUT/<stem>.chunk.safetensors and OUT/<stem>.recurrent.safetensors:
the inputs, then o, ht and the gradients under the contract's names, so that `dplr verify` judges them as they are.
Used to calibrate the default policy on a foreign kernel (issue 10). fla is not part of this project: point
PYTHONPATH at a checkout of its python package. Usage: fla_record.py IN OUT
"""
import glob
import os
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from fla.ops.generalized_delta_rule.dplr import chunk_dplr_delta_rule, fused_recurrent_dplr_delta_rule

    os.makedirs(dst, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    for path in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k).cuda() for k in f.keys()}
        scale = float(meta["scale"])
        stem = os.path.splitext(os.path.basename(path))[0]
        names = ["q", "k", "v", "a", "b", "gk"]
        h0 = t.get("h0")
        for kernel in ("chunk", "recurrent"):
            xs = [t[n].detach().clone().requires_grad_(kernel == "chunk" and "do" in t) for n in names]
            h = None if h0 is None else h0.detach().clone().requires_grad_(kernel == "chunk" and "do" in t)
            if kernel == "chunk":
                o, ht = chunk_dplr_delta_rule(*xs, scale=scale, initial_state=h, output_final_state=True)
            else:
                with torch.no_grad():
                    o, ht = fused_recurrent_dplr_delta_rule(*xs, scale=scale, initial_state=h, output_final_state=True)
            out = {n: t[n].contiguous() for n in t}
            out["o"], out["ht"] = o.detach().contiguous(), ht.detach().contiguous()
            if kernel == "chunk" and "do" in t:
                torch.autograd.backward((o, ht), (t["do"], t["dht"]))
                for n, x in zip(names, xs):
                    out["d" + n] = x.grad.contiguous()
                if h is not None:
                    out["dh0"] = h.grad.contiguous()
            producer = f"fla {'chunk_dplr_delta_rule, chunk 16' if kernel == 'chunk' else 'fused_recurrent_dplr_delta_rule'}"
            save_file({n: v.cpu() for n, v in out.items()}, os.path.join(dst, f"{stem}.{kernel}.safetensors"),
                      metadata={**meta, "producer": producer, "gpu": gpu})
            nan = [n for n, v in out.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            print(f"{stem}.{kernel}: {'non-finite: ' + ','.join(nan) if nan else 'finite'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
