"""Runs docs/examples/test_fla_chunk_dplr.py, the worked example for fla contributors, as it is written
(it skips without torch, a CUDA device or fla)."""
import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "examples" / "test_fla_chunk_dplr.py"


def load_example():
    spec = importlib.util.spec_from_file_location("fla_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # raises pytest's Skipped where torch or fla is missing
    return module


@pytest.mark.parametrize("dist", ["fla", "strong-decay"])
def test_worked_example(dist):
    example = load_example()
    if not example.torch.cuda.is_available():
        pytest.skip("fla's Triton kernels need a CUDA device")
    example.test_chunk_dplr_delta_rule_is_close_to_exact(dist)
