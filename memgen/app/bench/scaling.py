"""Time per grid point against d: memgen's scan, the naive loop a researcher writes, the eigh floor.

What the gallery's benchmark figure draws (``memgen.app.figures``); the versioned suite
(``suite``) is the reference for numbers.
"""

from __future__ import annotations

import time

import numpy as np

from ...scan import scan
from ...specs import Grid, Linear, Spiked
from .floor import eigh_floor, floor_matrices, training_sets


def naive_seconds(d: int, gamma: float, lams, seeds: int, samples: int, beta: float) -> float:
    """Seconds of the loop a researcher writes: ``scipy.linalg.sqrtm`` per (lam, seed, model),
    then m and q in NumPy, float64 (spiked data drawn with NumPy; only the time is kept)."""
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    n = int(round(gamma * d))
    t = 0.0
    for _ in range(seeds):
        v = rng.standard_normal(d)
        v /= np.linalg.norm(v)
        sets = [rng.standard_normal((n, d)) + np.sqrt(beta) * rng.standard_normal((n, 1)) * v for _ in range(2)]
        zz = rng.standard_normal((samples, d))
        t0 = time.perf_counter()
        xs = []
        for X in sets:
            C = X.T @ X / n
            per = []
            for lam in lams:
                G = np.real(sqrtm(C + lam * np.eye(d)))
                x = zz @ G.T
                xn = x / np.linalg.norm(x, axis=1, keepdims=True)
                Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
                np.max(np.abs(xn @ Xn.T), axis=1).mean()  # m
                per.append(xn)
            xs.append(per)
        for xa, xb in zip(*xs):
            np.sum(xa * xb, axis=1).mean()  # q
        t += time.perf_counter() - t0
    return t


def scaling_records(ds_list, seeds: int, naive_seeds: int, gamma: float = 1.0, lams=(0.0, 0.01, 0.1, 1.0),
                    samples: int = 32, beta: float = 2.0, repeat: int = 3) -> dict:
    """Seconds per grid point against d for ``memgen.plots.bench_scaling``.

    memgen: the steady-state scan (compiled first, min of ``repeat``). Floor: ``eigh_floor`` of
    the grid's own matrices on the scan's devices with memgen's BLAS setting (the same cores).
    Naive: ``naive_seconds`` with one BLAS thread (in a process where JAX's thread pool holds
    the cores, OpenBLAS threads contend with it: 2 s instead of 35 ms for one 256 x 256
    ``sqrtm`` on 2 cores, which would flatter memgen).

    Returns:
        ``{method: (d list, seconds-per-point list)}``.
    """
    from threadpoolctl import threadpool_limits

    names = ("memgen scan (float32)", "naive sqrtm loop (float64)", "eigh floor (float32)")
    rec: dict = {k: ([], []) for k in names}
    for d in ds_list:
        data, model = Spiked(d=d, beta=beta), Linear(samples=samples)
        grid = Grid(gamma=[gamma], lam=lams, seeds=seeds)
        pts = len(lams) * seeds

        def run():
            return scan(data, model, grid, progress=False)

        run()  # compile
        best = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            best.append(time.perf_counter() - t0)
        floor = eigh_floor(floor_matrices(d, [gamma], training_sets(data, grid)), repeat)["floor_s"]
        with threadpool_limits(limits=1, user_api="blas"):
            naive = naive_seconds(d, gamma, lams, naive_seeds, samples, beta)
        for name, sec in zip(names, (min(best) / pts, naive / (len(lams) * naive_seeds), floor / pts)):
            rec[name][0].append(d)
            rec[name][1].append(sec)
    return rec
