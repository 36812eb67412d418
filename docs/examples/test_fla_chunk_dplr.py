"""How an fla contributor checks chunk_dplr_delta_rule, forward and backward, against the exact answer.

Copy into fla's tests and run with pytest on a CUDA machine; it skips without torch, a GPU or fla.
(python/tests/test_fla_example.py runs this very file.)
"""
import pytest

import dplr_verify as dv

torch = pytest.importorskip("torch", reason="the example runs fla's kernel through torch")
fla_dplr = pytest.importorskip("fla.ops.generalized_delta_rule.dplr", reason="flash-linear-attention is not installed")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fla's Triton kernels need a CUDA device")
@pytest.mark.parametrize("dist", ["fla", "strong-decay"])
def test_chunk_dplr_delta_rule_is_close_to_exact(dist):
    case = dv.gen(dist, B=1, T=256, H=2, K=64, V=64, dtype="bf16", seed=0, device="cuda")
    inputs = {name: case[name].clone().requires_grad_() for name in ("q", "k", "v", "a", "b", "gk", "h0")}
    o, ht = fla_dplr.chunk_dplr_delta_rule(
        **{name: inputs[name] for name in ("q", "k", "v", "a", "b", "gk")},
        scale=case["scale"], initial_state=inputs["h0"], output_final_state=True)
    ((o * case["do"]).sum() + (ht * case["dht"]).sum()).backward()  # the contract's loss
    gradients = {"d" + name: tensor.grad for name, tensor in inputs.items()}
    dv.assert_close_to_exact({**case, "o": o, "ht": ht, **gradients})  # raises with the table on failure
