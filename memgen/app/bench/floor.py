"""The eigh floor: the LAPACK ``eigh`` of every matrix a linear scan decomposes, on the scan's devices."""

from __future__ import annotations

import timeit

import numpy as np


def training_sets(data, grid, dtype="float32"):
    """The training sets memgen draws, per seed: (Xa, Xb), each [n_max, d] NumPy.

    The same keys and draws as the scan (``point_keys``, ``data.population``, ``data.sample``),
    so the floor decomposes the grid's own matrices. Spiked/PowerLaw data without a beta/alpha
    sweep (the suite's grids).
    """
    import jax
    import jax.numpy as jnp

    from memgen import data as data_mod
    from memgen.engines.spectral.engine import point_keys

    if grid.beta is not None or grid.alpha is not None:
        raise ValueError("the eigh floor takes a grid without a beta/alpha sweep")
    dt = jnp.dtype(dtype)
    alpha = getattr(data, "alpha", 0.0)
    root = jax.random.key(grid.seed)
    n_max = max(round(g * data.d) for g in grid.gamma)
    for s in range(grid.seeds):
        k_pop, k_a, k_b, _ = point_keys(root, s)
        pop = data_mod.population(k_pop, data, jnp.asarray(data.beta, dt), jnp.asarray(alpha, dt), dt)
        yield np.asarray(data_mod.sample(k_a, pop, n_max)), np.asarray(data_mod.sample(k_b, pop, n_max))


def floor_matrices(d: int, gammas, sets, dtype="float32") -> dict[int, np.ndarray]:
    """Every matrix the grid decomposes, stacked by size m: {m: [count, m, m]}.

    Per (gamma, seed, model) the d x d covariance X^T X / n, or the n x n Gram matrix X X^T / n
    when n < d, of the first n = round(gamma d) rows (eigh cost depends on the spectrum, so
    these are the grid's own matrices, not stand-ins). ``sets``: (Xa, Xb) per seed.
    """
    mats: dict[int, list] = {}
    for Xa, Xb in sets:
        for gamma in gammas:
            n = round(gamma * d)
            for X in (Xa[:n], Xb[:n]):
                M = X @ X.T / n if n < d else X.T @ X / n
                mats.setdefault(M.shape[0], []).append(np.asarray(M, dtype))
    return {m: np.stack(v) for m, v in sorted(mats.items())}


def _blas_thread_count() -> int | None:
    """BLAS threads a LAPACK call gets right now (host), or None if no BLAS is loaded."""
    from threadpoolctl import threadpool_info

    n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(n) if n else None


def eigh_floor(mats: dict[int, np.ndarray], repeat: int, devices=None) -> dict:
    """Seconds (min of ``repeat``) of the LAPACK ``eigh`` of every matrix in ``mats``.

    The same call memgen's kernels make (``memgen.linalg.eigh``: one matrix per LAPACK call
    on a CPU, batched elsewhere), with memgen's BLAS setting (``blas_threads``). The matrices
    are spread over ``devices`` (default all local devices, as ``memgen.scan``) by cost m^3,
    longest first, and every device works at once, so the floor gets the scan's cores.

    Returns:
        dict: ``floor_s``; ``floor_devices`` (devices given work); ``floor_threads`` (host
        BLAS threads per LAPACK call while timed; None on an accelerator, whose eigh does not
        run in host BLAS).
    """
    import jax
    from concurrent.futures import ThreadPoolExecutor

    from memgen import linalg
    from memgen.run.device import blas_threads

    devices = list(jax.local_devices() if devices is None else devices)
    load = [0.0] * len(devices)
    parts: list[dict[int, list]] = [{} for _ in devices]
    for m in sorted(mats, reverse=True):
        for A in mats[m]:
            k = min(range(len(devices)), key=load.__getitem__)
            load[k] += float(m) ** 3
            parts[k].setdefault(m, []).append(A)
    f = jax.jit(linalg.eigh)
    work = [[jax.device_put(np.stack(v), dev) for v in part.values()]
            for dev, part in zip(devices, parts) if part]

    def one(arrays):
        jax.block_until_ready([f(A) for A in arrays])

    with ThreadPoolExecutor(max_workers=len(work)) as pool, blas_threads(devices):
        def once():
            list(pool.map(one, work))

        once()  # compile every (device, size) once
        threads = _blas_thread_count() if devices[0].platform == "cpu" else None
        best = min(timeit.repeat(once, number=1, repeat=repeat))
    return dict(floor_s=best, floor_devices=len(work), floor_threads=threads)
