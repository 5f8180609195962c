"""memgen's linear scan vs the naive NumPy/SciPy loop vs the eigh floor, in one run.

(a) memgen.scan: one eigh per dataset, every lam from it, jit/vmap-batched (steady state,
    compile time reported apart);
(b) the loop a researcher writes: for every (gamma, seed, model, lam) ``scipy.linalg.sqrtm``
    of C + lam I, then the order parameters with NumPy (``tests/reference.py``);
(c) the floor: LAPACK ``eigh`` of every matrix the grid needs (2 per (gamma, seed): d x d, or
    the n x n Gram matrix when n < d), nothing else; the faster of JAX's (``memgen.app.bench``'s
    floor, the one ``memgen bench`` reports: on the scan's devices) and NumPy's.
(a) and (b) are run on the very same training sets and noise and must agree. Prints a table,
writes a JSON record (``--json``), and ends with ``speedup_vs_naive=<x> floor_ratio=<y>``,
both at float64 (the dtype of the NumPy loop); float32 figures are in the table.

    python benchmarks/bench_linear.py --quick      # < 2 min on 2 CPU cores

``--large`` compares memgen's two routes of the linear generator on the same cores instead:
``method="krylov"`` (matrix-free Lanczos) against ``method="eigh"`` at d = 4096 (gamma 0.5 and
2, 2 seeds, lam 0.01, 0.1, 1; float32), timing a second, compiled run of each, and ends with
``krylov_speedup=<x> max_abs_err=<e>`` (e over m, q, m_kad, Q, top_eig; w2 is compared in
units of its stored error w2_err).

    python benchmarks/bench_linear.py --large      # ~4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import timeit

import subprocess
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import reference as ref  # noqa: E402  (float64 NumPy/SciPy reference, independent of memgen)

if "--naive-worker" not in sys.argv:  # the baseline runs in a process without JAX's threads
    import jax
    import jax.numpy as jnp

    import memgen
    from memgen.app import bench as bench_mod
    from memgen import data as data_mod
    from memgen.run.device import use_every_core

    use_every_core()  # as the memgen command runs: one CPU device per core (the floor gets them too)


def best_of(fn, repeat: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def datasets(data, grid, samples):
    """The exact training sets and noise memgen uses, as float64 NumPy (untimed)."""
    from memgen.engines.spectral.engine import point_keys

    root = jax.random.key(grid.seed)
    out = {}
    for s in range(grid.seeds):
        k_pop, k_a, k_b, k_z = point_keys(root, s)
        pop = data_mod.population(k_pop, data, jnp.asarray(data.beta, jnp.float64),
                                  jnp.asarray(0.0, jnp.float64), jnp.float64)
        n_max = max(int(round(g * data.d)) for g in grid.gamma)
        Xa = np.asarray(data_mod.sample(k_a, pop, n_max))
        Xb = np.asarray(data_mod.sample(k_b, pop, n_max))
        z = np.asarray(data_mod.normal(k_z, (samples, data.d), jnp.float64))
        out[s] = (Xa, Xb, z, np.asarray(pop.latent))
    return out


def naive_loop(d, gammas, lams, seeds, sets):
    """(b): sqrtm per (gamma, seed, model, lam); w2 from the same sqrtm (Sigma = I)."""
    res = {}
    for gi, gamma in enumerate(gammas):
        n = int(round(gamma * d))
        for s in range(seeds):
            Xa, Xb, z, V = sets[s]
            per = {}
            for half, X in (("a", Xa[:n]), ("b", Xb[:n])):
                C = X.T @ X / n
                xs, w2 = [], []
                for lam in lams:
                    G = ref.sqrtm_generator(X, lam)
                    xs.append(z @ G.T)
                    w2.append((d + np.trace(C) + d * lam - 2 * np.trace(G)) / d)
                evals, U = np.linalg.eigh(C)
                k = V.shape[1]
                per[half] = dict(x=xs, w2=w2, Q=np.sum((U[:, -k:].T @ V) ** 2) / k, top=evals[-1],
                                 mem=[ref.memorisation(x, X) for x in xs])
            for li in range(len(lams)):
                xa, xb = per["a"]["x"][li], per["b"]["x"][li]
                row = {key: (per["a"]["mem"][li][key] + per["b"]["mem"][li][key]) / 2
                       for key in ("m", "m_kad", "mem_frac")}
                row["q"] = ref.cos(xa, xb).mean()
                row["w2"] = (per["a"]["w2"][li] + per["b"]["w2"][li]) / 2
                res[gi, li, s] = row
            res[gi, s] = {"Q": (per["a"]["Q"] + per["b"]["Q"]) / 2, "top_eig": (per["a"]["top"] + per["b"]["top"]) / 2}
    return res


def floor_mats(d, gammas, sets):
    """Every matrix the grid decomposes, float64, by size: ``memgen.app.bench.floor_matrices`` of
    our sets (the same matrices as ``memgen bench``); the child gets them through the .npz."""
    return bench_mod.floor_matrices(d, gammas, [(Xa, Xb) for Xa, Xb, _, _ in sets.values()], "float64")


def naive_worker(path):
    """Child process (no JAX loaded): the naive loop and NumPy's eigh floor, timed."""
    z = np.load(path, allow_pickle=True)
    meta = z["meta"].item()
    sets = {s: (z[f"Xa{s}"], z[f"Xb{s}"], z[f"z{s}"], z[f"V{s}"]) for s in range(meta["seeds"])}
    t0 = time.perf_counter()
    res = naive_loop(meta["d"], meta["gamma"], meta["lam"], meta["seeds"], sets)
    t_naive = time.perf_counter() - t0
    floors = {}
    for dtype in ("float32", "float64"):
        mats = {int(k[1:]): z[k].astype(dtype) for k in z.files if k.startswith("M")}
        floors[dtype] = best_of(lambda: [np.linalg.eigh(A) for A in mats.values()], meta["repeat"])
    np.save(path.replace(".npz", "_out.npy"), {"res": res, "naive_s": t_naive, "floor_numpy_s": floors},
            allow_pickle=True)


def compare(ds, naive, grid):
    worst = {}
    for (key, row) in naive.items():
        for var, val in row.items():
            if len(key) == 3:
                gi, li, s = key
                got = float(ds[var].isel(gamma=gi, lam=li, seed=s))
            else:
                gi, s = key
                got = float(ds[var].isel(gamma=gi, seed=s))
            worst[var] = max(worst.get(var, 0.0), abs(got - float(val)))
    return worst


KRYLOV_COMPARED = ("m", "q", "m_kad", "Q", "top_eig")


def large(a) -> int:
    """--large: the Krylov route against the eigh route, same grid, same cores, float32."""
    d = a.d or 4096
    data = memgen.Spiked(d=d, beta=2.0)
    grid = memgen.Grid(gamma=[0.5, 2.0], lam=[0.01, 0.1, 1.0], seeds=a.seeds or 2)
    record, out = {}, {}
    for method in ("eigh", "krylov"):
        run = lambda: memgen.scan(data, memgen.Linear(samples=32, method=method), grid, progress=False)  # noqa: E731
        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out[method] = run()
        t_run = time.perf_counter() - t0
        record[method] = dict(run_s=t_run, compile_s=first - t_run)
        print(f"{method:7s} run {t_run:7.2f} s (compile {first - t_run:5.1f} s)", flush=True)
    a_, b_ = out["eigh"], out["krylov"]
    err = {v: float(abs(a_[v] - b_[v]).max()) for v in KRYLOV_COMPARED}
    w2_z = float((abs(a_.w2 - b_.w2) / b_.w2_err).max())
    dev = jax.devices()[0]
    record.update(device=f"{dev.platform}:{dev.device_kind}", scan_devices=jax.device_count(), cores=os.cpu_count(),
                  jax=jax.__version__, memgen=memgen.__version__, d=d, gamma=list(grid.gamma), lam=list(grid.lam),
                  seeds=grid.seeds, samples=32, dtype="float32", max_abs_err=err, w2_err_max=float(b_.w2_err.max()),
                  w2_diff_in_err_units=w2_z, krylov_speedup=record["eigh"]["run_s"] / record["krylov"]["run_s"])
    print(f"device: {record['device']} x{record['scan_devices']} ({record['cores']} cores), jax {jax.__version__}; "
          f"d={d}, {len(grid.gamma)} gamma x {len(grid.lam)} lam x {grid.seeds} seeds, float32")
    print("agreement (max |krylov - eigh|): " + ", ".join(f"{k}={v:.1e}" for k, v in err.items())
          + f"; w2: max |diff| / w2_err = {w2_z:.2f} (w2_err <= {record['w2_err_max']:.1e})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(record, fh, indent=1)
    print(f"krylov_speedup={record['krylov_speedup']:.2f} max_abs_err={max(err.values()):.1e}")
    return 0 if max(err.values()) <= 1e-3 else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--naive-worker":
        return naive_worker(argv[1])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="d=256, 5 gammas x 4 lams x 4 seeds")
    p.add_argument("--large", action="store_true", help="the Krylov route against the eigh route at d=4096")
    p.add_argument("--d", type=int)
    p.add_argument("--seeds", type=int)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", help="write the record here")
    a = p.parse_args(argv)
    if a.large:
        return large(a)
    memgen.enable_x64()  # float64 available; the float32 scan passes its dtype explicitly
    d = a.d or (256 if a.quick else 512)
    seeds = a.seeds or (4 if a.quick else 8)
    gammas = [0.25, 0.5, 1.0, 2.0, 4.0] if a.quick else list(np.round(np.geomspace(0.25, 4, 8), 4))
    data = memgen.Spiked(d=d, beta=2.0)
    model = memgen.Linear(samples=32)
    grid = memgen.Grid(gamma=gammas, lam=[0.0, 0.01, 0.1, 1.0], seeds=seeds)
    n_points = len(gammas) * seeds * len(grid.lam)

    # (b) and NumPy's floor first, in a child process that never loads JAX
    sets = datasets(data, grid, model.samples)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "sets.npz")
    arrays = {f"{k}{s}": v for s, (Xa, Xb, z, V) in sets.items() for k, v in zip(("Xa", "Xb", "z", "V"), (Xa, Xb, z, V))}
    mats64 = floor_mats(d, gammas, sets)
    arrays.update({f"M{m}": A for m, A in mats64.items()})
    np.savez(path, meta=np.array(dict(d=d, gamma=gammas, lam=list(grid.lam), seeds=seeds, repeat=a.repeat)), **arrays)
    subprocess.run([sys.executable, __file__, "--naive-worker", path], check=True)
    child = np.load(path.replace(".npz", "_out.npy"), allow_pickle=True).item()
    naive, t_naive = child["res"], child["naive_s"]

    rows, record = [], {}
    for x64 in (False, True):
        dtype = "float64" if x64 else "float32"
        run = lambda: memgen.scan(data, model, grid, dtype=dtype, progress=False)  # noqa: E731
        t0 = time.perf_counter()
        ds = run()
        first = time.perf_counter() - t0
        t_run = best_of(run, a.repeat)
        fl = bench_mod.eigh_floor({m: A.astype(dtype) for m, A in mats64.items()}, a.repeat)
        f_jax = fl["floor_s"]
        f_np = child["floor_numpy_s"][dtype]
        floor = min(f_jax, f_np)
        rows.append((f"memgen scan ({dtype})", t_run, first - t_run))
        rows.append((f"eigh floor ({dtype}; jax {f_jax:.3g} s, numpy {f_np:.3g} s)", floor, 0.0))
        record[dtype] = dict(run_s=t_run, compile_s=first - t_run, floor_s=floor, floor_jax_s=f_jax,
                             floor_numpy_s=f_np, floor_ratio=t_run / floor, speedup_vs_naive=t_naive / t_run,
                             floor_devices=fl["floor_devices"], floor_threads=fl["floor_threads"])
        last_ds = ds
    rows.append(("naive sqrtm loop (float64, NumPy/SciPy)", t_naive, 0.0))
    err = compare(last_ds, naive, grid)

    dev = jax.devices()[0]
    record.update(
        device=f"{dev.platform}:{dev.device_kind}", scan_devices=jax.device_count(),
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(), jax=jax.__version__, numpy=np.__version__, memgen=memgen.__version__,
        precision="highest", d=d, gamma=gammas, lam=list(grid.lam), seeds=seeds, samples=model.samples,
        grid_points=n_points, naive_s=t_naive, max_abs_diff_vs_naive=err)
    print(f"device: {record['device']} x{record['scan_devices']} ({record['cores']} cores; floor on "
          f"{record['float32']['floor_devices']} device(s), BLAS threads {record['float32']['floor_threads']}), "
          f"jax {jax.__version__}; "
          f"d={d}, {len(gammas)} gamma x {len(grid.lam)} lam x {seeds} seeds = {n_points} points")
    print(f"{'method':58s} {'time [s]':>9s} {'compile [s]':>11s} {'ms/point':>9s}")
    for name, t, c in rows:
        print(f"{name:58s} {t:9.3f} {c:11.2f} {1e3 * t / n_points:9.3f}")
    print("agreement (max |memgen f64 - naive|): " + ", ".join(f"{k}={v:.1e}" for k, v in err.items()))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(record, fh, indent=1)
    ok = max(err.values()) < 1e-6
    for dtype in ("float32", "float64"):
        r = record[dtype]
        print(f"{dtype}: speedup_vs_naive={r['speedup_vs_naive']:.1f} floor_ratio={r['floor_ratio']:.2f}")
    # The last line: memgen's default dtype (float32) against the float64 loop researchers write.
    print(f"speedup_vs_naive={record['float32']['speedup_vs_naive']:.1f} "
          f"floor_ratio={record['float32']['floor_ratio']:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
