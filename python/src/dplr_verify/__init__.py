"""dplr_verify: how far a DPLR delta-rule kernel is from the exact answer, from Python and pytest.

A thin layer over dplr-verify's C++ core (the same reference, metrics and report as the ``dplr`` binary):

    import dplr_verify as dv
    case = dv.gen("fla", B=1, T=256, H=2, K=64, V=64, dtype="bf16", seed=0)   # inputs, do, dht
    exact = dv.reference(**case)                  # o, ht, dq ... dh0 (float64), estimated_bits
    dv.assert_close_to_exact({**case, "o": o, "dq": dq, ...})    # pytest: raises with the table
    dv.record("case.safetensors", **case, o=o)    # a file any `dplr` command reads

Tensors may be numpy arrays (float64/32/16, ml_dtypes.bfloat16, int64/int32) or torch tensors (any device,
bf16 included; moved to the CPU and widened to float64 exactly). Every value crosses to C++ as float64
beside its storage dtype, so nothing is rounded on the way.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

import numpy as np

from . import _core
from ._core import InputError

__all__ = [
    "InputError",
    "Report",
    "assert_close_to_exact",
    "distributions",
    "gen",
    "policy_presets",
    "read",
    "record",
    "reference",
    "verify",
]
__version__ = _core.version()

_NUMPY_DTYPES = {
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
}
_TORCH_DTYPE_NAMES = {
    "torch.float64": "F64",
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.int64": "I64",
    "torch.int32": "I32",
}
_INTEGRAL_DOUBLE_LIMIT = 2**53  # integers beyond this are not exact in float64 (io/ refuses them too)
_OPTION_NAMES = ("scale", "reverse")


def _bfloat16():
    try:
        import ml_dtypes
    except ImportError:  # bf16 numpy arrays cannot exist without it, so nothing needs it then
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _typed(name: str, x: Any) -> tuple[str, np.ndarray]:
    """(storage dtype name, C-contiguous float64 values) of one tensor; exact for every supported dtype."""
    if _is_torch_tensor(x):
        dtype_name = _TORCH_DTYPE_NAMES.get(str(x.dtype))
        if dtype_name is None:
            raise TypeError(f"tensor '{name}': torch dtype {x.dtype} is not one of "
                            f"{', '.join(_TORCH_DTYPE_NAMES)}")
        import torch

        values = x.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
    else:
        array = np.asarray(x)
        dtype_name = _NUMPY_DTYPES.get(array.dtype)
        bfloat16 = _bfloat16()
        if dtype_name is None and bfloat16 is not None and array.dtype == bfloat16:
            dtype_name = "BF16"
        if dtype_name is None:
            raise TypeError(f"tensor '{name}': numpy dtype {array.dtype} is not one of float64, float32, "
                            "float16, ml_dtypes.bfloat16, int64, int32")
        values = np.ascontiguousarray(array, dtype=np.float64)
    if dtype_name.startswith("I") and values.size and np.abs(values).max() > _INTEGRAL_DOUBLE_LIMIT:
        raise ValueError(f"tensor '{name}': integers beyond 2^53 are not exact in float64")
    return dtype_name, values


def _split_case(case: Mapping[str, Any]) -> tuple[dict[str, tuple[str, np.ndarray]], float | None, bool]:
    """The tensors of a case dict, and its options (`scale`, `reverse` entries); None entries are absent."""
    tensors = {name: _typed(name, x) for name, x in case.items() if name not in _OPTION_NAMES and x is not None}
    scale = case.get("scale")
    return tensors, None if scale is None else float(scale), bool(case.get("reverse", False))


def policy_presets() -> list[str]:
    """The tolerance presets: strict, default, report-only (reports/SCHEMA.md has their limits)."""
    return _core.policy_presets()


def distributions() -> list[str]:
    """The named input distributions of `gen` (generators/distributions.hpp describes each)."""
    return _core.distribution_names()


def reference(q, k, v, a, b, gk, h0=None, do=None, dht=None, cu_seqlens=None, scale=None, reverse=False,
              precision="dd", certify=True, estimate="repeat", threads=0, rigorous=False, proven_bits=64.0,
              max_precision=4096) -> dict[str, Any]:
    """The exact outputs of the contract's recurrence, and with `do` its seven gradients.

    Returns {"o", "ht"[, "dq", "dk", "dv", "da", "db", "dgk", "dh0"]} as float64 numpy arrays (the exact
    values correctly rounded to double), plus "estimated_bits" (per tensor, the bits on which the run and
    a more precise repeat agree; empty with certify=False or rigorous=True), "proven_bits" (per tensor, the
    bits the balls' radii prove; empty unless rigorous=True), "radius" (rigorous=True: per tensor, a float64
    array bounding |exact - value| less half an ulp of the value; else empty), "precision" and "seconds".
    precision: "double", "dd" (double-double), "td", "qd", or a bit count for MPFR ("256").
    estimate: how "estimated_bits" are found: "repeat" (against a run at the next precision) or
    "extrapolated" (from a run at the previous one, plus the precisions' gap less a margin; validated for td
    from dd and dd from double, several times cheaper: `dplr ref --estimate` has the same choice).
    rigorous: Arb ball arithmetic at a working precision growing until `proven_bits` are proven on every
    tensor or `max_precision` bits are reached (then an error says what was reached); precision and
    certify are ignored. A build without Arb refuses it with an error.
    """
    case = dict(q=q, k=k, v=v, a=a, b=b, gk=gk, h0=h0, do=do, dht=dht, cu_seqlens=cu_seqlens)
    tensors, _, _ = _split_case(case)
    outputs, estimated_bits, proven, radius, precision_name, seconds = _core.reference(
        tensors, None if scale is None else float(scale), bool(reverse), str(precision), bool(certify), str(estimate),
        int(threads),
        bool(rigorous), float(proven_bits), int(max_precision))
    result: dict[str, Any] = dict(outputs)
    result.update(estimated_bits=dict(estimated_bits), proven_bits=dict(proven), radius=dict(radius),
                  precision=precision_name, seconds=seconds)
    return result


class Report(dict):
    """The JSON report `dplr verify --report` writes (reports/SCHEMA.md), as a dict; `.table` is the
    terminal table of its case, and `.passed` whether the verdict is "pass"."""

    def __init__(self, fields: dict, table: str):
        super().__init__(fields)
        self.table = table

    @property
    def passed(self) -> bool:
        return self["verdict"] == "pass"


def _verify_arguments(policy, tol, policy_file, precision, certify, estimate, threads, convention, decay, layout,
                      map) -> "_core.VerifyArguments":
    arguments = _core.VerifyArguments()
    arguments.convention = convention
    arguments.decay = decay or ""
    arguments.layout = layout
    arguments.map = dict(map or {})
    arguments.preset = policy
    arguments.policy_files = [os.fspath(policy_file)] if isinstance(policy_file, (str, os.PathLike)) else \
        [os.fspath(f) for f in (policy_file or [])]
    arguments.overrides = [tol] if isinstance(tol, str) else list(tol or [])
    arguments.precision = str(precision)
    arguments.certify = bool(certify)
    arguments.estimate = str(estimate)
    arguments.threads = int(threads)
    arguments.command_line = [sys.executable, *sys.argv]
    return arguments


def verify(case, policy: str = "default", *, tol=None, policy_file=None, precision="dd", certify=True,
           estimate="repeat", threads=0, convention="contract", decay=None, layout="batch-first", map=None) -> Report:
    """Judges the outputs and gradients a case holds against the exact answer of its inputs, as
    `dplr verify` does, and returns the same report (a dict; report["verdict"] is "pass", "fail" or "error").

    case: a file path (.safetensors, .npz, .npy folder) or a dict of the contract's tensors (q, k, v, a, b,
    gk, h0, cu_seqlens, do, dht, o, ht, dq ... dh0), optionally with "scale" and "reverse" entries.
    policy: a preset (policy_presets()); tol: overrides such as "o=1.5,dgk:rel_rmse=1e-2" (a string or a
    list); policy_file: JSON policy file(s) (verify/tolerance.hpp documents both).
    The file's names and layout (verify/conventions.hpp): convention "rwkv7" (r, w, k, v, a, b, y and dr, dw,
    ...) with decay "clampw", "exp" or "log"; layout "head-first" ([B, H, T, D]); map {"file name":
    "contract name"}. The report then names the tensors as the case does.
    precision, certify, estimate: the exact reference's, as in reference().
    Bad input raises InputError (a ValueError) naming the tensor and what was expected.
    """
    arguments = _verify_arguments(policy, tol, policy_file, precision, certify, estimate, threads, convention, decay,
                                  layout, map)
    if isinstance(case, (str, os.PathLike)):
        fields, table = _core.verify_path(os.fspath(case), arguments)
    elif isinstance(case, Mapping):
        tensors, scale, reverse = _split_case(case)
        fields, table = _core.verify_tensors(tensors, scale, reverse, arguments)
    else:
        raise TypeError(f"dplr_verify.verify: case must be a file path or a dict of tensors, not {type(case).__name__}")
    return Report(json.loads(fields), table)


def _where(name: str, index: list[int]) -> str:
    """Which token and head a multi-index of a contract tensor names ([B, T, H, D] or [N, H, K, V])."""
    if len(index) != 4:
        return ""
    if name in ("ht", "dh0", "h0", "dht"):
        return f" (sequence {index[0]}, head {index[1]})"
    return f" (batch {index[0]}, token {index[1]}, head {index[2]})"


def failure_message(report: Report) -> str:
    """What assert_close_to_exact raises with: the verdict, each failing tensor's worst element with its
    token and head, and the table."""
    lines = [f"dplr_verify: verdict {report['verdict']} under policy {report['policy']['preset']}"]
    for case in report["cases"]:
        for result in case["tensors"] + [r for r in ((case.get("stages") or {}).get("results") or [])]:
            if result["verdict"] == "pass":
                continue
            worst = result["metrics"]["max_abs_error"]
            lines.append(f"  {result['name']}: {result['verdict']}: {result['reason']}")
            lines.append(f"    worst element {result['name']}{worst['index']}{_where(result['name'], worst['index'])}:"
                         f" actual {worst['actual']}, exact {worst['expected']}")
    if report.get("input_error"):
        lines.append(f"  input error: {report['input_error']}")
    return "\n".join(lines) + "\n\n" + report.table


def assert_close_to_exact(case, policy: str = "default", **options) -> Report:
    """The pytest idiom: verify(case, policy, **options), raising AssertionError with the worst elements
    and the table unless every tensor passes. Returns the report when it does."""
    __tracebackhide__ = True  # pytest shows the caller's line, as for torch.testing.assert_close
    report = verify(case, policy, **options)
    if not report.passed:
        raise AssertionError(failure_message(report))
    return report


def record(path, scale=None, reverse=False, producer=None, **tensors) -> str:
    """Writes the tensors, under the contract's names, to a file any `dplr` command reads (.safetensors,
    .npz, .npy, or a folder), with metadata scale, reverse and producer. Each tensor keeps its dtype."""
    typed = {name: _typed(name, x) for name, x in tensors.items() if x is not None}
    metadata = {} if producer is None else {"producer": str(producer)}
    _core.write_tensor_file(os.fspath(path), typed, None if scale is None else float(scale), bool(reverse), metadata)
    return os.fspath(path)


def _as_numpy(dtype_name: str, values: np.ndarray) -> np.ndarray:
    if dtype_name == "BF16":
        bfloat16 = _bfloat16()
        if bfloat16 is None:
            raise ImportError("a BF16 tensor needs ml_dtypes for numpy (pip install ml_dtypes)")
        return values.astype(bfloat16)
    return values.astype({"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                          "I32": np.int32}[dtype_name])


def read(path) -> dict[str, Any]:
    """The tensors of a file in their storage dtypes (bf16 as ml_dtypes.bfloat16), and its metadata
    under "metadata"."""
    tensors, metadata = _core.read_tensor_file(os.fspath(path))
    result: dict[str, Any] = {name: _as_numpy(dtype, values) for name, (dtype, values) in tensors.items()}
    result["metadata"] = dict(metadata)
    return result


def gen(distribution: str = "fla", *, B=1, T=64, H=2, K=16, V=16, dtype="bf16", gk_dtype="f32", seed=0,
        h0=True, backward=True, cu_seqlens=None, gate_normalizer=1.0, scale=None, reverse=False,
        device=None) -> dict[str, Any]:
    """A case drawn from a named distribution (distributions()), as `dplr gen` draws it: q, k, v, a, b, gk,
    [h0], [do, dht], [cu_seqlens] in their dtypes, and "scale" and "reverse", so the result can be passed
    to reference(**case) as it is. device: None for numpy arrays, else a torch device ("cuda") for tensors.
    """
    dtype_names = {"f64": "F64", "float64": "F64", "f32": "F32", "float32": "F32", "f16": "F16",
                   "float16": "F16", "fp16": "F16", "bf16": "BF16", "bfloat16": "BF16"}
    tensors, resolved_scale, _ = _core.generate_case(
        distribution, [B, T, H, K, V], dtype_names.get(str(dtype).lower(), str(dtype)),
        dtype_names.get(str(gk_dtype).lower(), str(gk_dtype)), int(seed), bool(h0), bool(backward),
        [int(c) for c in (cu_seqlens if cu_seqlens is not None else [])], float(gate_normalizer),
        None if scale is None else float(scale), bool(reverse))
    if device is None:
        case: dict[str, Any] = {name: _as_numpy(d, values) for name, (d, values) in tensors.items()}
    else:
        import torch

        torch_dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                        "I64": torch.int64, "I32": torch.int32}
        case = {name: torch.from_numpy(values).to(device=device, dtype=torch_dtypes[d])
                for name, (d, values) in tensors.items()}
    case["scale"] = resolved_scale
    case["reverse"] = bool(reverse)
    return case
