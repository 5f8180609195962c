"""Ensemble training: K denoisers at once (as the scan trains them) vs K trained one by one.

All routes train the very same K models (same keys, data, n, lam, steps) and must agree
within tolerance:

* ``ensemble``: ``train_ensemble``, memgen's layout: the K models sharded over every device
  (on a CPU, one XLA device per core; see ``--devices``), micro-batches vmapped, the steps a
  ``lax.scan`` inside one compiled call;
* ``loop`` (the baseline of ``ensemble_speedup``): the loop a researcher writes, a Python loop
  over models and over steps calling one jit-compiled AdamW step;
* ``scan_loop``: a Python loop over models, each trained by one jit-compiled ``lax.scan``:
  the strongest one-by-one route, reported as ``speedup_vs_scan_loop``.

Compile time is reported separately; steady state is ``min(timeit.repeat(...))`` over
``--repeat`` runs with inputs already on the device. Prints one JSON record, then
``ensemble_speedup=<x>`` as the last line.

    python benchmarks/bench_denoisers.py --K 32
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
import timeit


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
    ap.add_argument("--devices", type=int, default=len(os.sched_getaffinity(0)),
                    help="XLA CPU devices (default: one per core; ignored on GPU/TPU)")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)  # before the backend starts
    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import jax.numpy as jnp
    import numpy as np

    from memgen.engines.denoisers import ConvDenoiser, ImageField, sample_field
    from memgen.engines.denoisers import model as model_mod
    from memgen.engines.denoisers.train import optimizer, train_ensemble, train_one, train_step

    dtype = jnp.dtype(args.dtype)
    spec = ConvDenoiser(depth=args.depth, width=args.width, batch=args.batch, steps=args.steps)
    field = ImageField(size=(args.size, args.size), alpha=1.0, k=1)
    K = args.K
    root = jax.random.key(0)
    keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(K))
    data = sample_field(jax.random.key(1), field, K * args.n, dtype).reshape(K, args.n, *field.size)
    n = jnp.asarray(np.linspace(1, args.n, K).round().astype(int))
    lam = jnp.asarray(np.linspace(0.0, 0.1, K), dtype)
    data, n, lam = jax.device_put((data, n, lam), jax.devices()[0])

    @functools.partial(jax.jit, static_argnames="spec")
    def init(key, lam, *, spec):
        k_init, k_steps = jax.random.split(key)
        params = model_mod.init_params(k_init, spec, dtype)
        with jax.numpy_dtype_promotion("standard"):
            return params, optimizer(spec, lam).init(params), k_steps

    @functools.partial(jax.jit, static_argnames="spec")
    def step(params, opt_state, k_steps, t, data, n, lam, *, spec):
        return train_step(params, opt_state, jax.random.fold_in(k_steps, t), data, n, lam, spec=spec)

    def ensemble():
        return train_ensemble(keys, data, n, lam, spec=spec)

    def loop():  # what a researcher writes: models one by one, steps one by one
        out = []
        for i in range(K):
            p, s, k_steps = init(keys[i], lam[i], spec=spec)
            losses = []
            for t in range(spec.steps):
                p, s, loss = step(p, s, k_steps, t, data[i], n[i], lam[i], spec=spec)
                losses.append(loss)
            out.append((p, jnp.stack(losses)))
        return out

    def scan_loop():
        return [train_one(keys[i], data[i], n[i], lam[i], spec=spec) for i in range(K)]

    t0 = time.perf_counter()
    pe, le = jax.block_until_ready(ensemble())
    compile_ens = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(train_one(keys[0], data[0], n[0], lam[0], spec=spec))
    compile_one = time.perf_counter() - t0
    jax.block_until_ready(loop())
    t_ens = min(timeit.repeat(lambda: jax.block_until_ready(ensemble()), number=1, repeat=args.repeat))
    t_loop = min(timeit.repeat(lambda: jax.block_until_ready(loop()), number=1, repeat=args.repeat))
    t_scan = min(timeit.repeat(lambda: jax.block_until_ready(scan_loop()), number=1, repeat=args.repeat))

    tol = 1e-3 if dtype == jnp.float32 else 1e-8
    pe, le = jax.device_get((pe, le))
    errs = {}
    for name, outs in (("loop", loop()), ("scan_loop", scan_loop())):
        e = 0.0
        for i, (p1, l1) in enumerate(jax.device_get(outs)):
            e = max(e, float(np.max(np.abs(le[i] - l1) / (np.abs(l1) + 1e-6))))
            for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(p1)):
                e = max(e, float(np.max(np.abs(a[i] - b)) / (np.max(np.abs(b)) + 1e-12)))
        errs[name] = e
    err = max(errs.values())
    if err > tol:
        raise SystemExit(f"ensemble and one-by-one training disagree: max relative error {err:.3g} > {tol}")

    dev = jax.devices()[0]
    rec = {
        "bench": "denoisers_ensemble",
        "device": f"{dev.platform}:{dev.device_kind} x{jax.device_count()}",
        "host_cores": os.cpu_count(),
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
        "scan_loop_s": round(t_scan, 4),
        "us_per_model_step": {k: round(1e6 * v / (K * spec.steps), 1)
                              for k, v in (("ensemble", t_ens), ("loop", t_loop), ("scan_loop", t_scan))},
        "speedup_vs_scan_loop": round(t_scan / t_ens, 2),
        "max_rel_err": errs,
    }
    print(json.dumps(rec))
    print(f"ensemble_speedup={t_loop / t_ens:.2f}")


if __name__ == "__main__":
    main()
