"""Ensemble training: K denoisers at once (one jit(vmap(train))) vs a Python loop over K.

Both routes train the very same K models (same keys, data, n, lam, steps) and must agree
within tolerance. Compile time is reported separately; steady state is
``min(timeit.repeat(...))`` over ``--repeat`` runs with inputs already on the device.
Prints one JSON record, then ``ensemble_speedup=<x>`` as the last line.

    python benchmarks/bench_denoisers.py --K 32
"""

from __future__ import annotations

import argparse
import json
import time
import timeit

import jax
import jax.numpy as jnp
import numpy as np

from memgen.denoisers import ConvDenoiser, ImageField, sample_field
from memgen.denoisers.train import train_ensemble, train_one


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--K", type=int, default=32, help="models in the ensemble")
    ap.add_argument("--size", type=int, default=8, help="image side")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=64, help="training pool per model")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    spec = ConvDenoiser(depth=args.depth, width=args.width, batch=args.batch, steps=args.steps)
    field = ImageField(size=(args.size, args.size), alpha=1.0, k=1)
    K = args.K
    root = jax.random.key(0)
    keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(K))
    data = sample_field(jax.random.key(1), field, K * args.n, dtype).reshape(K, args.n, *field.size)
    n = jnp.asarray(np.linspace(1, args.n, K).round().astype(int))
    lam = jnp.asarray(np.linspace(0.0, 0.1, K), dtype)
    data, n, lam = jax.device_put((data, n, lam))

    def ensemble():
        return train_ensemble(keys, data, n, lam, spec=spec)

    def loop():
        return [train_one(keys[i], data[i], n[i], lam[i], spec=spec) for i in range(K)]

    t0 = time.perf_counter()
    pe, le = jax.block_until_ready(ensemble())
    compile_ens = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(train_one(keys[0], data[0], n[0], lam[0], spec=spec))
    compile_one = time.perf_counter() - t0
    t_ens = min(timeit.repeat(lambda: jax.block_until_ready(ensemble()), number=1, repeat=args.repeat))
    t_loop = min(timeit.repeat(lambda: jax.block_until_ready(loop()), number=1, repeat=args.repeat))

    outs = loop()
    tol = 1e-3 if dtype == jnp.float32 else 1e-8
    err = 0.0
    for i, (p1, l1) in enumerate(outs):
        err = max(err, float(jnp.max(jnp.abs(le[i] - l1) / (jnp.abs(l1) + 1e-6))))
        for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(p1)):
            err = max(err, float(jnp.max(jnp.abs(a[i] - b)) / (jnp.max(jnp.abs(b)) + 1e-12)))
    if err > tol:
        raise SystemExit(f"ensemble and loop disagree: max relative error {err:.3g} > {tol}")

    rec = {
        "bench": "denoisers_ensemble",
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "dtype": str(dtype),
        "precision": "highest",
        "K": K,
        "spec": {"depth": spec.depth, "width": spec.width, "batch": spec.batch, "steps": spec.steps},
        "image": list(field.size),
        "compile_ensemble_s": round(compile_ens, 3),
        "compile_single_s": round(compile_one, 3),
        "ensemble_s": round(t_ens, 4),
        "loop_s": round(t_loop, 4),
        "max_rel_err": err,
    }
    print(json.dumps(rec))
    print(f"ensemble_speedup={t_loop / t_ens:.2f}")


if __name__ == "__main__":
    main()
