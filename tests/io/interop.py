#!/usr/bin/env python3
"""Interoperability of io/ with the real libraries (ctest: io.interop, label cpu).

Usage: interop.py PATH/TO/dplr_io_dump

Forward: numpy (np.save, np.lib.format.write_array v1/v2/v3, big-endian, Fortran order, np.savez,
np.savez_compressed) and safetensors (safetensors.numpy.save_file with metadata; bf16 through
safetensors.torch when torch is importable, else through safetensors.serialize_file with dtype "bfloat16"
from raw bits, which is the same Rust writer) write files; dplr_io_dump reads them and prints JSON; the
values must match bit for bit (NaN matches NaN).
Reverse: dplr_io_dump --write writes files from unrounded doubles; numpy (np.load) and safetensors
(safe_open; deserialize for bf16, which numpy lacks) read them; the values must equal the doubles rounded
to nearest even by numpy's own casts (float64 -> float32/float16) or, for bf16, by a reference here.
Exit 77 (ctest: skipped) when numpy or safetensors is missing; scripts/install-deps.sh installs them.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

try:
    import numpy as np
    import safetensors
    from safetensors import safe_open
    from safetensors.numpy import save_file
except ImportError as error:
    print(f"SKIP: {error} (scripts/install-deps.sh installs numpy and safetensors)")
    sys.exit(77)

try:
    import torch  # noqa: F401
    from safetensors.torch import save_file as torch_save_file
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

DUMP = sys.argv[1]
NAME_OF = {"f2": "F16", "f4": "F32", "f8": "F64", "i4": "I32", "i8": "I64"}
failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}")


def same_bits(expected, actual):
    """Equal as float64, bit for bit, except that NaN equals NaN."""
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if e.shape != a.shape:
        return False
    nan = np.isnan(e)
    return bool(np.array_equal(nan, np.isnan(a)) and np.array_equal(e.view(np.uint64)[~nan], a.view(np.uint64)[~nan]))


def dump(path):
    run = subprocess.run([DUMP, str(path)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"dplr_io_dump {path} failed ({run.returncode}): {run.stderr}")
    out = json.loads(run.stdout)
    return out["metadata"], {t["name"]: t for t in out["tensors"]}


def write(spec, out, *options):
    spec_path = str(out) + ".spec.json"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    run = subprocess.run([DUMP, "--write", spec_path, str(out), *options], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"dplr_io_dump --write {out} {options} failed: {run.stderr}")


def compare_dumped(origin, tensors, name, array, dtype_name):
    t = tensors.get(name)
    check(t is not None, f"{origin}: tensor {name} missing")
    if t is None:
        return
    check(t["dtype"] == dtype_name, f"{origin}: {name} dtype {t['dtype']}, expected {dtype_name}")
    check(list(t["shape"]) == list(array.shape), f"{origin}: {name} shape {t['shape']}, expected {list(array.shape)}")
    check(same_bits(np.asarray(array, dtype=np.float64).ravel(order="C"), t["values"]),
          f"{origin}: {name} values differ")


rng = np.random.default_rng(7)
np.seterr(all="ignore")  # overflow to infinity in casts is expected here
import warnings  # noqa: E402
warnings.simplefilter("ignore", RuntimeWarning)


def sample(descr, shape):
    """An array of dtype descr (e.g. '>f2') with awkward values first."""
    dtype = np.dtype(descr)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype.kind == "f":
        info = np.finfo(dtype)
        flat = (rng.standard_normal(n) * 3).astype(dtype)
        special = [-0.0, np.nan, np.inf, -np.inf, info.smallest_subnormal, info.max, info.tiny]
    else:
        flat = rng.integers(-100000, 100000, n).astype(dtype)
        special = [2**53, -(2**53), -1] if dtype.itemsize == 8 else [2**31 - 1, -(2**31), -1]
    k = min(n, len(special))
    flat[:k] = np.array(special[:k]).astype(dtype)
    return flat.reshape(shape)


def forward(tmp):
    shapes = [(2, 3, 4), (), (5,), (0, 3), (1, 4, 2, 3)]
    # npy: every dtype, byte order, memory order, format version.
    for kind in NAME_OF:
        for order in "<>":
            for fortran in (False, True):
                for version in (None, (1, 0), (2, 0), (3, 0)):
                    for shape in shapes:
                        a = sample(order + kind, shape)
                        if fortran:
                            a = np.asfortranarray(a)
                        path = os.path.join(tmp, f"fw_{kind}{'be' if order == '>' else 'le'}_{int(fortran)}_{version}_{len(shape)}.npy")
                        if version is None:
                            np.save(path, a)
                        else:
                            with open(path, "wb") as f:
                                np.lib.format.write_array(f, a, version=version)
                        _, tensors = dump(path)
                        compare_dumped(path, tensors, os.path.basename(path)[:-4], a, NAME_OF[kind])
    # npz: stored and deflated, mixed dtypes, orders and byte orders.
    arrays = {"q": sample("<f4", (1, 8, 2, 4)), "gk": np.asfortranarray(sample("<f8", (3, 5))),
              "h": sample(">f2", (2, 2)), "cu_seqlens": np.array([0, 3, 8], dtype="<i8"),
              "n": sample(">i4", (7,)), "empty": np.zeros((0, 4), dtype="<f4"), "s": np.float64(2.5)}
    for name, save in (("savez", np.savez), ("savez_compressed", np.savez_compressed)):
        path = os.path.join(tmp, f"fw_{name}.npz")
        save(path, **arrays)
        _, tensors = dump(path)
        check(sorted(tensors) == sorted(arrays), f"{path}: names {sorted(tensors)}")
        for key, a in arrays.items():
            a = np.asarray(a)
            compare_dumped(path, tensors, key, a, NAME_OF[a.dtype.str[1:]])
    # safetensors through the library's numpy API, with metadata.
    st = {"f64": sample("<f8", (3, 4)), "f32": sample("<f4", (1, 16, 2, 8)), "f16": sample("<f2", (33,)),
          "i64": sample("<i8", (2, 5)), "i32": sample("<i4", (4,)), "scalar": np.array(1.5, dtype="<f4"),
          "empty": np.zeros((0,), dtype="<f8")}
    metadata = {"scale": "0.125", "producer": "interop.py", "note": "ünïcode \"quoted\""}
    path = os.path.join(tmp, "fw.safetensors")
    save_file(st, path, metadata=metadata)
    got_metadata, tensors = dump(path)
    check(got_metadata == metadata, f"{path}: metadata {got_metadata}")
    for key, a in st.items():
        compare_dumped(path, tensors, key, a, {"f64": "F64", "f32": "F32", "f16": "F16", "i64": "I64",
                                               "i32": "I32", "scalar": "F32", "empty": "F64"}[key])
    # bf16.
    bits = rng.integers(0, 2**16, 300).astype(np.uint16)
    bits[:6] = [0x8000, 0x7FC0, 0x7F80, 0xFF80, 0x0001, 0x7F7F]  # -0, NaN, inf, -inf, min subnormal, max
    bits = bits.reshape(3, 100)
    expected = (bits.astype(np.uint32) << 16).view(np.float32)
    path = os.path.join(tmp, "fw_bf16.safetensors")
    if HAVE_TORCH:
        torch_save_file({"x": torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)}, path,
                        metadata={"via": "torch"})
    else:
        print("note: torch is not importable; bf16 is written by safetensors.serialize_file (dtype 'bfloat16', "
              "the same Rust writer) from raw bits instead of safetensors.torch.save_file")
        raw = np.ascontiguousarray(bits)
        safetensors.serialize_file({"x": safetensors.TensorSpec(dtype="bfloat16", shape=raw.shape,
                                                                data_ptr=raw.ctypes.data, data_len=raw.nbytes)},
                                   path, metadata={"via": "serialize_file"})
    _, tensors = dump(path)
    compare_dumped(path, tensors, "x", expected, "BF16")
    # A dtype we do not read is refused with a clear error (exit 2), not misread.
    path = os.path.join(tmp, "fw_u8.npy")
    np.save(path, np.arange(4, dtype=np.uint8))
    run = subprocess.run([DUMP, path], capture_output=True, text=True)
    check(run.returncode == 2 and "fw_u8.npy" in run.stderr and "'|u1'" in run.stderr,
          f"uint8 .npy: expected exit 2 naming the file and '|u1', got {run.returncode}: {run.stderr}")


def round_bf16(x):
    """x rounded to bfloat16, to nearest even, straight from double."""
    if not math.isfinite(x) or x == 0:
        return x
    lead = max(math.frexp(x)[1] - 1, -126)  # exponent of x's leading bit, clamped to bf16's subnormal range
    r = round(math.ldexp(x, 7 - lead))  # Python rounds a float half to even, exactly
    y = math.ldexp(r, lead - 7)
    if abs(y) > (2 - 2**-7) * 2**127:
        return math.copysign(math.inf, x)
    return math.copysign(y, x) if y == 0 else y


def rounded(values, dtype):
    v = np.array([float(x) for x in values], dtype=np.float64)
    if dtype == "F64" or dtype.startswith("I"):
        return v
    if dtype == "F32":
        return v.astype(np.float32).astype(np.float64)
    if dtype == "F16":
        return v.astype(np.float16).astype(np.float64)
    return np.array([round_bf16(x) for x in v])


def spec_values(dtype, n):
    if dtype == "I64":
        vals = [2**53, -(2**53), -1, 0] + [int(x) for x in rng.integers(-10**12, 10**12, n)]
    elif dtype == "I32":
        vals = [2**31 - 1, -(2**31), -1, 0] + [int(x) for x in rng.integers(-10**9, 10**9, n)]
    else:
        # Ties and near-ties of each narrow format, overflow to infinity, subnormals, specials.
        vals = [1 + 2**-11, 1 + 2**-11 + 2**-40, 1 + 3 * 2**-11, 1 + 2**-24, 1 + 2**-24 + 2**-50, 1 + 2**-8,
                1 + 2**-8 + 2**-40, 65519.99, 65520.0, 3.5e38, 1e-9, 2**-25, 3 * 2**-26, 1e-42, -0.0, "nan", "inf",
                "-inf", 1e300]
        vals += [float(x) for x in rng.standard_normal(n) * 10]
    return vals[:n]


def reverse(tmp):
    shapes = {"a": [2, 3, 4], "b": [7], "c": [], "d": [0, 2], "e": [1, 4, 2, 3]}
    def spec_for(dtypes):
        spec = {"tensors": {}, "metadata": {}}
        for dtype in dtypes:
            for key, shape in shapes.items():
                n = int(np.prod(shape, dtype=np.int64))
                spec["tensors"][f"{dtype.lower()}_{key}"] = {"dtype": dtype, "shape": shape,
                                                             "values": spec_values(dtype, n)}
        return spec

    def expected(spec, name):
        t = spec["tensors"][name]
        return rounded(t["values"], t["dtype"]).reshape(t["shape"])

    # safetensors, read back by the library.
    spec = spec_for(["F64", "F32", "F16", "BF16", "I64", "I32"])
    spec["metadata"] = {"scale": "0.125", "reverse": "true", "note": "ünïcode"}
    path = os.path.join(tmp, "rv.safetensors")
    write(spec, path)
    with safe_open(path, framework="numpy") as f:
        check(f.metadata() == spec["metadata"], f"{path}: metadata {f.metadata()}")
        check(sorted(f.keys()) == sorted(spec["tensors"]), f"{path}: keys {sorted(f.keys())}")
        for name, t in spec["tensors"].items():
            if t["dtype"] == "BF16":
                continue
            a = f.get_tensor(name)
            check(a.dtype.name == {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64",
                                   "I32": "int32"}[t["dtype"]], f"{path}: {name} dtype {a.dtype}")
            check(list(a.shape) == t["shape"], f"{path}: {name} shape {a.shape}")
            check(same_bits(expected(spec, name), a.astype(np.float64)), f"{path}: {name} values differ")
    with open(path, "rb") as f:
        for name, info in safetensors.deserialize(f.read()):
            if info["dtype"] != "BF16":
                continue
            bits = np.frombuffer(bytes(info["data"]), dtype="<u2").astype(np.uint32) << 16
            check(list(info["shape"]) == spec["tensors"][name]["shape"], f"{path}: {name} shape {info['shape']}")
            check(same_bits(expected(spec, name), bits.view(np.float32)), f"{path}: bf16 {name} values differ")

    # npy: every dtype, each format version, memory order and byte order.
    npy_dtypes = ["F64", "F32", "F16", "I64", "I32"]
    for dtype in npy_dtypes:
        one = spec_for([dtype])
        for version in (1, 2, 3):
            for fortran in (False, True):
                for big in (False, True):
                    for name in one["tensors"]:
                        path = os.path.join(tmp, f"rv_{name}_{version}{int(fortran)}{int(big)}.npy")
                        single = {"tensors": {name: one["tensors"][name]}}
                        options = ["--npy-version", str(version)] + (["--fortran"] if fortran else []) + \
                                  (["--big-endian"] if big else [])
                        write(single, path, *options)
                        with open(path, "rb") as f:
                            check(np.lib.format.read_magic(f) == (version, 0), f"{path}: version")
                        a = np.load(path)
                        want = expected(one, name)
                        check(a.shape == want.shape, f"{path}: shape {a.shape}")
                        check(a.dtype.byteorder == (">" if big else "<") or a.dtype.itemsize == 1 or
                              (a.dtype.byteorder == "=" and not big), f"{path}: byte order {a.dtype.byteorder}")
                        if fortran and a.ndim > 1 and a.size > 1:
                            check(a.flags.f_contiguous and not a.flags.c_contiguous, f"{path}: not Fortran order")
                        check(same_bits(want, a.astype(np.float64)), f"{path}: values differ")

    # npz stored and deflated, read by np.load and checked by zipfile's own CRC test.
    spec = spec_for(npy_dtypes)
    spec["metadata"] = {"scale": "0.125"}
    for compress in (False, True):
        path = os.path.join(tmp, f"rv_{int(compress)}.npz")
        write(spec, path, *(["--compress"] if compress else []))
        with zipfile.ZipFile(path) as z:
            check(z.testzip() is None, f"{path}: zipfile finds a bad CRC")
            methods = {i.compress_type for i in z.infolist()}
            check(methods == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}, f"{path}: methods {methods}")
            check(json.loads(z.read("__metadata__.json")) == spec["metadata"], f"{path}: metadata member")
        with np.load(path) as npz:
            names = [n for n in npz.files if n != "__metadata__.json"]
            check(sorted(names) == sorted(spec["tensors"]), f"{path}: names {sorted(names)}")
            for name in spec["tensors"]:
                check(same_bits(expected(spec, name), npz[name].astype(np.float64)), f"{path}: {name} values differ")

    # A folder of NAME.npy.
    path = os.path.join(tmp, "rv_folder")
    write(spec, path)
    for name in spec["tensors"]:
        a = np.load(os.path.join(path, name + ".npy"))
        check(same_bits(expected(spec, name), a.astype(np.float64)), f"{path}/{name}.npy: values differ")


def main():
    print(f"numpy {np.__version__}, safetensors {safetensors.__version__}, torch {'yes' if HAVE_TORCH else 'no'}")
    with tempfile.TemporaryDirectory(prefix="dplr_interop_") as tmp:
        forward(tmp)
        reverse(tmp)
    print(f"{checks} checks, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
