#!/usr/bin/env python3
"""fla_peer.py: flash-linear-attention on the shapes of dplr_bench_gpu, for a same-card comparison.

Measures fla's o accuracy on B1 T512 H2 D64 against a float64 recurrence (gk from fla's logsigmoid
distribution and uniform in [-30, 0]; first, so that a time limit cuts timings rather than this; FLA_PEER_DTYPES
picks the dtypes, bf16 by default), then times fla's chunk_dplr_delta_rule and fused_recurrent_dplr_delta_rule
(forward only, bf16) with triton.testing.do_bench (median), and the forward + backward step at the backward issue's
shapes with the memory its forward holds for the backward. FLA_PEER_ACCURACY=0 / FLA_PEER_TIMING=0 / FLA_PEER_TRAINING=0 skip a part. fla is not part of this project:
point PYTHONPATH at a checkout of its python package. FLA_PEER_WAIT_FILE=F: time only once F exists
(compile while the GPU is busy with something else); FLA_PEER_READY_FILE=R: R is created each time fla has compiled
(and autotuned, which runs kernels) a timing's code and waits for F, so that the other program can time its own
kernels with the GPU to itself. Skips clearly (exit 0, a message) when fla or a GPU is
missing. Usage: fla_peer.py [out.json]
"""
import json
import os
import sys


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        import torch
        import triton
        from fla.ops.generalized_delta_rule.dplr import chunk_dplr_delta_rule, fused_recurrent_dplr_delta_rule
    except Exception as e:  # noqa: BLE001
        print(f"fla_peer: SKIPPED, fla/torch/triton not importable: {e!r}")
        return 0
    if not torch.cuda.is_available():
        print("fla_peer: SKIPPED, no CUDA device")
        return 0
    import torch.nn.functional as F

    dev = "cuda"
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}")
    results = []

    def inputs(B, T, H, D, dtype=torch.bfloat16, gate="fla"):
        q = torch.randn(B, T, H, D, device=dev, dtype=dtype)
        k = F.normalize(torch.randn(B, T, H, D, device=dev, dtype=torch.float32), dim=-1).to(dtype)
        v = torch.randn(B, T, H, D, device=dev, dtype=dtype)
        a = F.normalize(torch.randn(B, T, H, D, device=dev, dtype=torch.float32), dim=-1).to(dtype)
        b = -a
        if gate == "fla":
            gk = F.logsigmoid(torch.randn(B, T, H, D, device=dev, dtype=torch.float32)).to(dtype)
        else:
            gk = (-30.0 * torch.rand(B, T, H, D, device=dev, dtype=torch.float32)).to(dtype)
        return q, k, v, a, b, gk

    def save():  # after every result, so that a timeout keeps what was measured
        if out:
            with open(out, "w") as f:
                json.dump({"device": name, "timing": "triton.testing.do_bench median", "results": results}, f, indent=1)

    def bench(label, shape, fn, fla_note):
        fn()  # compiles (Triton) before waiting for the GPU to be free
        torch.cuda.synchronize()
        ready = os.environ.get("FLA_PEER_READY_FILE")
        if ready:  # compiled and autotuned: fla leaves the GPU alone until it times
            open(ready, "w").close()
        wait_for_gpu()
        ms = triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")
        print(f"{label:34s} {shape:24s} median {ms:8.4f} ms   (issue's H200 note {fla_note})")
        sys.stdout.flush()
        results.append({"name": label, "shape": shape, "median_ms": ms})
        save()

    with torch.no_grad():
        # Accuracy first (one small shape: few Triton compilations), so that a time limit cuts timings, not this.
        if os.environ.get("FLA_PEER_ACCURACY", "1") != "0":
            accuracy(inputs, results, save)
        if os.environ.get("FLA_PEER_TIMING", "1") != "0":
            for (B, T, H, D, note) in [(8, 4096, 16, 64, 2.01), (4, 4096, 8, 128, 1.39)]:
                sets = [inputs(B, T, H, D) for _ in range(2)]
                h0 = None
                it = [0]

                def run_chunk(cs=None):
                    s = sets[it[0] % 2]
                    it[0] += 1
                    return chunk_dplr_delta_rule(*s, initial_state=h0, output_final_state=True)

                bench("fla chunk_dplr bf16", f"B{B} T{T} H{H} D{D}", run_chunk, note)
            for (label, B, T, H, D, note, nsets) in [("fla decode T=1 bf16", 64, 1, 16, 64, 0.050, 16),
                                                     ("fla fused_recurrent bf16", 8, 4096, 16, 64, 5.34, 2),
                                                     ("fla fused_recurrent bf16", 4, 4096, 8, 128, 0, 2)]:
                sets = [inputs(B, T, H, D) + (torch.randn(B, H, D, D, device=dev, dtype=torch.float32),) for _ in range(nsets)]
                it = [0]

                def run_rec():
                    q, k, v, a, b, gk, h0 = sets[it[0] % nsets]
                    it[0] += 1
                    return fused_recurrent_dplr_delta_rule(q, k, v, a, b, gk, initial_state=h0, output_final_state=True)

                bench(label, f"B{B} T{T} H{H} D{D}", run_rec, note)
                if T == 1:  # a short kernel: also timed as CUDA-graph replays (no Python launch gaps), as ours
                    ms = triton.testing.do_bench_cudagraph(run_rec, rep=300, return_mode="median")
                    print(f"{label + ' (graph)':34s} {'B%d T%d H%d D%d' % (B, T, H, D):24s} median {ms:8.4f} ms", flush=True)
                    results.append({"name": label + " (graph)", "shape": f"B{B} T{T} H{H} D{D}", "median_ms": ms})
                    save()

    if os.environ.get("FLA_PEER_TRAINING", "1") != "0":
        training(inputs, results, save, bench)
    save()
    return 0


def wait_for_gpu():
    """With FLA_PEER_WAIT_FILE set, waits until that file exists: fla compiles while another program has the GPU
    (the same device call), and times only once that program has finished."""
    import time
    flag = os.environ.get("FLA_PEER_WAIT_FILE")
    while flag and not os.path.exists(flag):
        time.sleep(0.5)


def training(inputs, results, save, bench):
    """fla's forward + backward (chunk_dplr_delta_rule, bf16) at the backward issue's shapes, timed as one step
    (forward, then backward of (o, ht) with fixed cotangents), and the device memory the forward leaves held for
    the backward: allocated after the forward minus before it, with its outputs o and ht counted apart."""
    import torch
    import triton
    from fla.ops.generalized_delta_rule.dplr import chunk_dplr_delta_rule
    for (B, T, H, D, note) in [(8, 4096, 16, 64, 6.95), (4, 4096, 8, 128, 4.85)]:
        torch.cuda.synchronize()
        sets = []
        for _ in range(2):
            xs = [x.detach().requires_grad_(True) for x in inputs(B, T, H, D)]
            do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
            dht = torch.randn(B, H, D, D, device="cuda", dtype=torch.float32)
            sets.append((xs, do, dht))
        it = [0]

        def step():
            xs, do, dht = sets[it[0] % 2]
            it[0] += 1
            for x in xs:
                x.grad = None
            o, ht = chunk_dplr_delta_rule(*xs, output_final_state=True)
            torch.autograd.backward((o, ht), (do, dht))

        step()  # compiles forward and backward
        xs, do, dht = sets[0]
        for x in xs:
            x.grad = None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        # The peaks of the forward and of the backward above what was allocated before the step: fla's transient
        # workspace, with o, ht (and, backward, the gradients it returns) in them; our bench prints its workspaces
        # apart from those.
        torch.cuda.reset_peak_memory_stats()
        o, ht = chunk_dplr_delta_rule(*xs, output_final_state=True)
        torch.cuda.synchronize()
        forward_peak = torch.cuda.max_memory_allocated() - before
        held = torch.cuda.memory_allocated() - before
        outputs = o.numel() * o.element_size() + ht.numel() * ht.element_size()
        torch.cuda.reset_peak_memory_stats()
        torch.autograd.backward((o, ht), (do, dht))
        torch.cuda.synchronize()
        backward_peak = torch.cuda.max_memory_allocated() - before
        grads = sum(x.grad.numel() * x.grad.element_size() for x in xs)
        del o, ht
        bench("fla chunk_dplr fwd+bwd bf16", f"B{B} T{T} H{H} D{D}", step, note)
        results[-1].update({"held_after_forward_bytes": held, "outputs_bytes": outputs,
                            "saved_for_backward_bytes": held - outputs, "forward_peak_bytes": forward_peak,
                            "backward_peak_bytes": backward_peak, "gradients_bytes": grads})
        print(f"    memory held after the forward: {held / 2**20:.1f} MiB ({outputs / 2**20:.1f} MiB of it o and ht); "
              f"peaks above the step's inputs: forward {forward_peak / 2**20:.1f} MiB, backward "
              f"{backward_peak / 2**20:.1f} MiB ({grads / 2**20:.1f} MiB of it the gradients)", flush=True)
        save()
        del sets


def accuracy(inputs, results, save):
    import torch
    from fla.ops.generalized_delta_rule.dplr import chunk_dplr_delta_rule, fused_recurrent_dplr_delta_rule
    dev = "cuda"
    # Accuracy against a float64 recurrence (B1 T512 H2 D64).
    def exact(q, k, v, a, b, gk, scale):
        q, k, v, a, b, gk = (x.double() for x in (q, k, v, a, b, gk))
        B, T, H, K = q.shape
        S = torch.zeros(B, H, K, v.shape[-1], device=dev, dtype=torch.float64)
        o = torch.empty(B, T, H, v.shape[-1], device=dev, dtype=torch.float64)
        for t in range(T):
            x = torch.einsum("bhkv,bhk->bhv", S, a[:, t])
            S = S * gk[:, t].exp()[..., None] + b[:, t][..., None] * x[:, :, None, :] + k[:, t][..., None] * v[:, t][:, :, None, :]
            o[:, t] = scale * torch.einsum("bhkv,bhk->bhv", S, q[:, t])
        return o, S

    def rel(x, r):
        return ((x.double() - r).pow(2).sum() / r.pow(2).sum()).sqrt().item()

    # bf16 only by default (each new dtype costs Triton compilations); FLA_PEER_DTYPES=bf16,fp16,fp32 for more.
    wanted = os.environ.get("FLA_PEER_DTYPES", "bf16").split(",")
    for dtype, dname in [(torch.bfloat16, "bf16"), (torch.float16, "fp16"), (torch.float32, "fp32")]:
        if dname not in wanted:
            continue
        for gate in ["fla", "U[-30,0]"]:
            q, k, v, a, b, gk = inputs(1, 512, 2, 64, dtype, gate)
            o_ref, ht_ref = exact(q, k, v, a, b, gk, 64 ** -0.5)
            floor = rel(o_ref.to(dtype), o_ref)
            row = {"name": f"fla accuracy {dname} gk~{gate}", "shape": "B1 T512 H2 D64", "floor": floor}
            for fname, fn in [("chunk", chunk_dplr_delta_rule), ("fused_recurrent", fused_recurrent_dplr_delta_rule)]:
                try:
                    o, ht = fn(q, k, v, a, b, gk, output_final_state=True)
                    row[fname + "_o"] = rel(o, o_ref)
                    row[fname + "_o_floor_ratio"] = row[fname + "_o"] / floor
                    row[fname + "_ht"] = rel(ht, ht_ref)
                    row[fname + "_nan"] = bool(torch.isnan(o).any().item())
                except Exception as e:  # noqa: BLE001
                    row[fname + "_error"] = repr(e)[:200]
            print("  " + json.dumps(row), flush=True)
            results.append(row)
            save()


if __name__ == "__main__":
    sys.exit(main())
