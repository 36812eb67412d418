#!/usr/bin/env python3
"""Golden values of the DPLR recurrence (DPLR.md, reference/recurrent.hpp), forward and backward, from mpmath
at 60 significant digits, independently of the C++ reference. Inputs are doubles with short significands
(written exactly, as float.hex); outputs as 60-digit decimal strings. Run once; the JSON is committed:
    python3 tests/data/golden/make_golden.py   # writes tests/data/golden/*.json
"""
import json
import os
import random

import mpmath
from mpmath import mp, mpf

mp.dps = 60
DIGITS = 60


def draw(rng, lo, hi, bits=20):
    """A double in [lo, hi) with at most `bits` significant bits below 1 (exact in every format)."""
    return round(rng.uniform(lo, hi) * 2**bits) / 2**bits


def case(name, B, T, H, K, V, seed, with_h0=True):
    rng = random.Random(seed)
    key = lambda lo, hi: [[[[draw(rng, lo, hi) for _ in range(K)] for _ in range(H)] for _ in range(T)] for _ in range(B)]
    val = lambda: [[[[draw(rng, -1, 1) for _ in range(V)] for _ in range(H)] for _ in range(T)] for _ in range(B)]
    state = lambda: [[[[draw(rng, -1, 1) for _ in range(V)] for _ in range(K)] for _ in range(H)] for _ in range(B)]
    q, k, a, b = key(-1, 1), key(-1, 1), key(-0.5, 0.5), key(-0.5, 0.5)
    gk = key(-1.0, 0.0)
    v, do = val(), val()
    h0 = state() if with_h0 else None
    dht = state()
    scale = float(K) ** -0.5  # the double the reference uses (K^-1/2 rounded)
    out = {n: [] for n in ["o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"]}
    zeros = lambda shape: [[mpf(0)] * shape[1] for _ in range(shape[0])]
    res = {n: {} for n in out}
    sc = mpf(scale)
    for n in range(B):
        for h in range(H):
            S = [[mpf(h0[n][h][i][j]) if h0 else mpf(0) for j in range(V)] for i in range(K)]
            states, xs, decays = [S], [], []
            for t in range(T):
                at, bt, kt, vt, qt = a[n][t][h], b[n][t][h], k[n][t][h], v[n][t][h], q[n][t][h]
                D = [mpmath.exp(mpf(g)) for g in gk[n][t][h]]
                x = [sum(S[i][j] * at[i] for i in range(K)) for j in range(V)]
                S = [[D[i] * S[i][j] + bt[i] * x[j] + kt[i] * vt[j] for j in range(V)] for i in range(K)]
                states.append(S), xs.append(x), decays.append(D)
                res["o"][(n, t, h)] = [sc * sum(S[i][j] * qt[i] for i in range(K)) for j in range(V)]
            res["ht"][(n, h)] = S
            G = [[mpf(dht[n][h][i][j]) for j in range(V)] for i in range(K)]
            for t in reversed(range(T)):
                at, bt, kt, vt, qt, dot = a[n][t][h], b[n][t][h], k[n][t][h], v[n][t][h], q[n][t][h], do[n][t][h]
                cur, prev, x, D = states[t + 1], states[t], xs[t], decays[t]
                G = [[G[i][j] + sc * qt[i] * dot[j] for j in range(V)] for i in range(K)]
                res["dq"][(n, t, h)] = [sc * sum(cur[i][j] * dot[j] for j in range(V)) for i in range(K)]
                res["dk"][(n, t, h)] = [sum(G[i][j] * vt[j] for j in range(V)) for i in range(K)]
                res["dv"][(n, t, h)] = [sum(G[i][j] * kt[i] for i in range(K)) for j in range(V)]
                res["db"][(n, t, h)] = [sum(G[i][j] * x[j] for j in range(V)) for i in range(K)]
                y = [sum(G[i][j] * bt[i] for i in range(K)) for j in range(V)]
                res["da"][(n, t, h)] = [sum(prev[i][j] * y[j] for j in range(V)) for i in range(K)]
                res["dgk"][(n, t, h)] = [D[i] * sum(G[i][j] * prev[i][j] for j in range(V)) for i in range(K)]
                G = [[D[i] * G[i][j] + at[i] * y[j] for j in range(V)] for i in range(K)]
            res["dh0"][(n, h)] = G
    text = lambda x: mpmath.nstr(x, DIGITS, min_fixed=0, max_fixed=0) if x != 0 else "0"
    flat = {}
    for nm in ["o", "dv"]:
        flat[nm] = [text(e) for n in range(B) for t in range(T) for h in range(H) for e in res[nm][(n, t, h)]]
    for nm in ["dq", "dk", "da", "db", "dgk"]:
        flat[nm] = [text(e) for n in range(B) for t in range(T) for h in range(H) for e in res[nm][(n, t, h)]]
    for nm in ["ht", "dh0"]:
        flat[nm] = [text(e) for n in range(B) for h in range(H) for row in res[nm][(n, h)] for e in row]
    hexes = lambda nested: [float(x).hex() for x in flatten(nested)]
    inputs = {"q": hexes(q), "k": hexes(k), "v": hexes(v), "a": hexes(a), "b": hexes(b), "gk": hexes(gk),
              "do": hexes(do), "dht": hexes(dht)}
    if h0:
        inputs["h0"] = hexes(h0)
    doc = {"description": f"mpmath {mpmath.__version__} at {mp.dps} digits: {name}", "shape": [B, T, H, K, V],
           "scale": float(scale).hex(), "inputs": inputs, "outputs": flat}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(path)


def flatten(x):
    if isinstance(x, list):
        for e in x:
            yield from flatten(e)
    else:
        yield x


if __name__ == "__main__":
    case("small_B1_T6_H1_K3_V2", 1, 6, 1, 3, 2, seed=1)
    case("heads_B2_T5_H2_K4_V3_no_h0", 2, 5, 2, 4, 3, seed=2, with_h0=False)
