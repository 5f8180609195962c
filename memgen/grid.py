"""THE batching layer: grid points -> padded buckets -> memory-sized chunks -> devices.

Everything about batching, compilation, chunking, devices, finite checks and progress lives
here; the kernels it composes (``data``, ``linear``, ``metrics``) are written for one point.

A grid point is (extra, gamma, seed), where ``extra`` indexes a swept beta or alpha; the lam
axis is not a grid dimension of the kernel but a trailing vector served from one
eigendecomposition per dataset (theory.md §2). Each point fits a *pair* of models on
disjoint training sets (two independent draws), stacked on an axis of size 2 so that one
batched ``eigh`` serves both halves of every point of a chunk.

On the CPU, batched LAPACK calls in flight at once (the two halves, or one call per device)
deadlocked with 0% CPU (jax 0.10.2, 2 cores): see ``_linalg.py`` for the cause and the fix;
``tests/test_grid.py`` keeps the regression.

Keys: the root is ``key(grid.seed)``; seed index ``s`` gets ``fold_in(root, s)`` and from it,
by ``fold_in`` with fixed tags, the population, the two training sets (row ``i`` from
``fold_in(k_half, i)``) and the shared noise z. Randomness is a function of where a point
sits, never of chunking or device count, and every gamma of one seed sees nested prefixes of
the same draw (common random numbers across the whole grid).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from . import data as data_mod
from . import linear, metrics
from .config import DataSpec, Grid, Linear, PowerLaw, n_samples

# Variable -> whether it has a lam axis. The order of this table is the store's order.
VARIABLES: dict[str, bool] = {
    "m": True,
    "q": True,
    "w2": True,
    "m_kad": True,
    "mem_frac": True,
    "Q": False,
    "top_eig": False,
}


def shapes(n_lam: int) -> dict[str, tuple[int, ...]]:
    """Stored variable -> trailing shape per grid point."""
    return {k: (n_lam,) if lam else () for k, lam in VARIABLES.items()}


_TAG_POP, _TAG_A, _TAG_B, _TAG_Z = 0, 1, 2, 3


# ------------------------------------------------------------------ the point kernel


def _model(key_rows, pop, n, lam, z, n_pad: int, isotropic: bool):
    """One model of a pair: fit on its own training set, generate, measure."""
    X = data_mod.sample(key_rows, pop, n_pad)
    fit = linear.fit(X, n)
    x = linear.generate(fit, lam, z)
    out = metrics.memorisation(x, X, linear.row_mask(n_pad, n, X.dtype))
    out["w2"] = metrics.bulk_w2(fit, lam, pop.sigma, isotropic)
    out["Q"] = metrics.latent_recovery(fit, pop.latent)
    out["top_eig"] = fit.evals[-1]
    return out, x


def point_keys(root: jax.Array, seed_idx) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(k_pop, k_a, k_b, k_z) of a seed: the one documented key layout (see module doc)."""
    k_seed = jax.random.fold_in(root, seed_idx)
    return tuple(jax.random.fold_in(k_seed, t) for t in (_TAG_POP, _TAG_A, _TAG_B, _TAG_Z))


def point(seed_idx, n, beta, alpha, lam, root, *, spec: DataSpec, n_pad: int, samples: int, dtype):
    """All order parameters of one grid point (a pair of models), every lam at once.

    Args:
        seed_idx: seed index [] (uint32).
        n: training-set size of each model [] (int, <= n_pad).
        beta: spike strengths [r]; alpha: power-law exponent [].
        lam: regularisations [L].
        root: the root PRNG key.
        spec, n_pad, samples, dtype: static.

    Returns:
        dict of arrays: lam-dependent variables [L], the others [] (see ``VARIABLES``).
    """
    k_pop, k_a, k_b, k_z = point_keys(root, seed_idx)
    pop = data_mod.population(k_pop, spec, beta, alpha, dtype)
    z = data_mod.normal(k_z, (samples, spec.d), dtype)
    halves = jnp.stack([k_a, k_b])
    model = partial(_model, n_pad=n_pad, isotropic=not isinstance(spec, PowerLaw))
    per, x = jax.vmap(model, in_axes=(0, None, None, None, None))(halves, pop, n, lam, z)
    out = {k: jnp.mean(v, axis=0) for k, v in per.items()}  # average the two models
    out["q"] = metrics.convergence(x[0], x[1])
    return out


# ------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Axes:
    """The scan's coordinates: ``extra`` is ("beta"|"alpha", values) or None."""

    extra: tuple[str, tuple[float, ...]] | None
    gamma: tuple[float, ...]
    lam: tuple[float, ...]
    seeds: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(E, G, S): points are the flat index of this shape."""
        return (len(self.extra[1]) if self.extra else 1, len(self.gamma), self.seeds)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def axes_of(grid: Grid) -> Axes:
    extra = ("beta", grid.beta) if grid.beta is not None else ("alpha", grid.alpha) if grid.alpha is not None else None
    return Axes(extra, grid.gamma, grid.lam, grid.seeds)


def pad_rows(n: int, d: int) -> int:
    """Static padded training-set size for n real rows.

    A ladder keeps compilations few: below d, steps of sqrt(2) (Gram route, ``eigh`` cost
    n_pad^3 so padding waste stays <= 2.8x); from d up, steps of 2 (covariance route, where
    n_pad only scales the cheap ``n_pad d^2`` covariance).
    """
    if n >= d:
        return d * 2 ** math.ceil(math.log2(n / d) - 1e-12)
    k = math.floor(2 * math.log2(n / d) + 1e-12)  # n <= d 2^(k/2+1/2)
    for step in (k, k + 1, k + 2):
        cand = min(d, int(math.ceil(d * 2 ** (step / 2) / 8) * 8))
        if cand >= n:
            return cand
    return d


def point_bytes(spec: DataSpec, n_pad: int, n_lam: int, samples: int, itemsize: int) -> int:
    """Estimated peak bytes of one point (both models), the chunk-size model."""
    d, r = spec.d, min(n_pad, spec.d)
    per_model = (
        2 * n_pad * d  # X and its masked copy
        + 3 * r * r + 2 * d * r  # covariance/Gram, eigh workspace, eigenvectors
        + 3 * n_lam * samples * d  # generated samples, centred copies
        + 4 * n_lam * samples * n_pad  # cosines, correlations, distances
        + (3 * n_lam * d * d if isinstance(spec, PowerLaw) else 0)  # eigvalsh per lam
    )
    return 2 * per_model * itemsize


def default_memory() -> int:
    """Memory budget of ONE device in bytes: half the free memory of device 0 (accelerators),
    or half the host RAM shared by the local CPU devices.

    Raises:
        ValueError: an accelerator that does not report its memory (pass ``memory``).
    """
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        st = dev.memory_stats() or {}
        if "bytes_limit" not in st:
            raise ValueError(f"memory: device {dev.platform}:{dev.device_kind} does not report its free memory; "
                             "pass memory= (--memory), e.g. 16GB")
        return int(0.5 * (st["bytes_limit"] - st.get("bytes_in_use", 0)))
    return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / jax.local_device_count())


@dataclass(frozen=True)
class Chunk:
    """Points (flat indices) that run as one compiled call.

    ``size`` is the padded number of points (a multiple of ``batch * devices``) and ``batch``
    the micro-batch evaluated at once on each device.
    """

    n_pad: int
    index: np.ndarray
    size: int
    batch: int


def plan(data: DataSpec, model: Linear, grid: Grid, *, itemsize: int, memory: int | None = None,
         chunk: int | None = None, done: np.ndarray | None = None, devices: int = 1,
         batch: int = 8) -> list[Chunk]:
    """Splits the not-yet-done points into chunks, grouped by padding bucket.

    Memory: each device holds one micro-batch of ``min(batch, points in the bucket)`` points
    in flight; a micro-batch that does not fit ``memory`` is refused. A chunk (the unit of
    checkpointing and progress) holds ``chunk`` points rounded up to whole micro-batches on
    every device (default four per device).

    Raises:
        ValueError: when one point does not fit in ``memory`` (before any compute).
    """
    ax = axes_of(grid)
    E, G, S = ax.shape
    flat = np.arange(ax.size).reshape(E, G, S)
    budget = default_memory() if memory is None else memory
    buckets: dict[int, list[int]] = {}
    for g, gamma in enumerate(ax.gamma):
        buckets.setdefault(pad_rows(n_samples(gamma, data.d), data.d), []).extend(flat[:, g, :].ravel())
    out = []
    for n_pad in sorted(buckets):
        idx = np.sort(np.asarray(buckets[n_pad]))
        # The micro-batch depends only on the spec and ``batch`` (stored with the spec), never on
        # memory, devices or what is done: every point sees the same arithmetic whatever the
        # chunking, device count or resume history.
        b = int(min(batch, len(idx)))
        need = point_bytes(data, n_pad, len(ax.lam), model.samples, itemsize)
        if need > budget:
            raise ValueError(
                f"memory={budget / 2**30:.3g} GiB is too small: one grid point at d={data.d}, "
                f"n_pad={n_pad} needs about {need / 2**30:.3g} GiB; raise --memory or lower d/gamma")
        if b * need > budget:
            raise ValueError(
                f"memory={budget / 2**30:.3g} GiB is too small for batch={b} points at d={data.d}, n_pad={n_pad} "
                f"({b * need / 2**30:.3g} GiB); lower --batch to {max(1, budget // need)} or raise --memory")
        if done is not None:
            idx = idx[~done[idx]]
        out += split(idx, n_pad=n_pad, batch=b, devices=devices, chunk=chunk)
    return out


def split(idx: np.ndarray, *, n_pad: int, batch: int, devices: int, chunk: int | None,
          per_device: int = 4) -> list[Chunk]:
    """Cuts point indices into chunks of exactly ``chunk`` points (the last may hold fewer).

    ``chunk`` is what the user asked for: the unit of checkpointing and progress, never
    rounded. The compute of a chunk is padded up to whole micro-batches of ``batch`` points on
    every device (``Chunk.size``), so a chunk smaller than ``batch * devices`` wastes compute
    but stores exactly its own points. Default: ``per_device`` micro-batches per device.
    """
    step = batch * devices
    size = per_device * step if chunk is None else chunk
    return [Chunk(n_pad, idx[i:i + size], -(-len(idx[i:i + size]) // step) * step, batch)
            for i in range(0, len(idx), size)]


# ------------------------------------------------------------------------- running


def _coords(ax: Axes, index: np.ndarray):
    e, g, s = np.unravel_index(index, ax.shape)
    return e, g, s


def _blas_threads_for_xla():
    """One OpenBLAS thread while XLA runs on the CPU.

    jaxlib's CPU ``eigh`` calls LAPACK from the OpenBLAS that SciPy/NumPy load, from inside
    XLA's own thread pool. OpenBLAS then spins up its threads on cores XLA already occupies:
    measured on a 2-core machine, 16 batched 256 x 256 ``eigh`` took 19 s instead of 0.05 s.
    """
    if jax.default_backend() != "cpu":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def sharded_map(fn: Callable, *, batch: int, devices: tuple, mapped: int, shared: int) -> Callable:
    """THE batching composition of memgen: ``jit(shard_map(lax.map(vmap(fn))))``.

    ``fn(*per_point, *shared_args)`` is written for one point. The returned callable takes
    ``mapped`` arrays with a leading points axis (length a multiple of ``batch *
    len(devices)``), sharded over ``devices`` and evaluated in micro-batches of ``batch``
    points per device, then ``shared`` arguments replicated on every device. Every point sees
    the same arithmetic whatever the chunk size or device count, because each device runs the
    same local program on fixed-size micro-batches.
    """

    def local(*args):
        per, rest = args[:mapped], args[mapped:]
        return jax.lax.map(lambda a: fn(*a, *rest), per, batch_size=batch)

    P = jax.sharding.PartitionSpec
    mesh = jax.sharding.Mesh(np.array(devices), ("points",))
    # Points never communicate: varying-manual-axis checks only get in the way of kernels that
    # build constants (e.g. zero-initialised parameters) inside lax.scan carries.
    kernel = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("points"),) * mapped + (P(),) * shared,
                                   out_specs=P("points"), check_vma=False))
    place = [jax.sharding.NamedSharding(mesh, P("points"))] * mapped + [jax.sharding.NamedSharding(mesh, P())] * shared

    def call(*args):  # inputs committed elsewhere (e.g. to device 0) are moved, not refused
        return kernel(*(jax.device_put(a, p) for a, p in zip(args, place)))

    call.jitted = kernel  # for inspection (compile cache, lowering)
    return call


@functools.lru_cache(maxsize=64)
def _compiled(spec: DataSpec, n_pad: int, batch: int, samples: int, dtype: str, devices: tuple) -> Callable:
    """The chunk kernel of the linear engine, cached across scans."""
    fn = partial(point, spec=spec, n_pad=n_pad, samples=samples, dtype=jnp.dtype(dtype))
    return sharded_map(fn, batch=batch, devices=devices, mapped=4, shared=2)


class Runner:
    """Compiles and runs chunks; one compiled kernel per (n_pad, chunk size, n_lam).

    Every compiled call evaluates points in fixed micro-batches of ``batch`` points per device
    (``lax.map`` over ``vmap``), each device running the same local program (``shard_map``
    over a 1-D mesh of all local devices). The arithmetic of a point therefore never depends on
    how many points share its chunk or how many devices share the chunk: results are
    bit-identical for any chunk size, device count or resume history at a given ``batch``.
    """

    def __init__(self, data: DataSpec, model: Linear, grid: Grid, dtype):
        self.data, self.model, self.grid, self.dtype = data, model, grid, jnp.dtype(dtype)
        self.ax = axes_of(grid)
        self.root = jax.random.key(grid.seed)
        self.lam = np.asarray(grid.lam, self.dtype)

    def _kernel(self, n_pad: int, batch: int):
        return _compiled(self.data, n_pad, batch, self.model.samples, self.dtype.name, tuple(jax.devices()))

    def inputs(self, index: np.ndarray, size: int):
        """Per-point kernel inputs, padded to ``size`` by repeating the last point."""
        idx = np.concatenate([index, np.full(size - len(index), index[-1])])
        e, g, s = _coords(self.ax, idx)
        n = np.array([n_samples(self.ax.gamma[i], self.data.d) for i in g], np.int32)
        r = len(self.data.beta)
        beta = np.broadcast_to(np.asarray(self.data.beta, self.dtype), (len(idx), r)).copy()
        alpha = np.full(len(idx), getattr(self.data, "alpha", 0.0), self.dtype)
        if self.ax.extra is not None:
            vals = np.asarray(self.ax.extra[1], self.dtype)[e]
            if self.ax.extra[0] == "beta":
                beta[:] = vals[:, None]
            else:
                alpha[:] = vals
        return s.astype(np.uint32), n, beta, alpha

    def run(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """Runs one chunk; returns host arrays with the padding removed, checked finite."""
        args = self.inputs(chunk.index, chunk.size)
        with jax.default_matmul_precision("highest"), _blas_threads_for_xla():
            out = wait(self._kernel(chunk.n_pad, chunk.batch)(*args, self.lam, self.root))
        out = {k: np.asarray(v)[: len(chunk.index)] for k, v in jax.device_get(out).items()}
        self._check_finite(chunk.index, out)
        return out

    def _check_finite(self, index: np.ndarray, out: dict[str, np.ndarray]) -> None:
        for name, v in out.items():
            bad = ~np.isfinite(v)
            if bad.any():
                row = np.argwhere(bad)[0]
                e, g, s = _coords(self.ax, index[row[0]])
                where = f"gamma={self.ax.gamma[g]}, seed={s}"
                if len(row) > 1:
                    where += f", lam={self.ax.lam[row[1]]}"
                if self.ax.extra is not None:
                    where = f"{self.ax.extra[0]}={self.ax.extra[1][e]}, " + where
                raise FloatingPointError(
                    f"non-finite {name} at {where}; rerun with JAX_DEBUG_NANS=1 to find its source")


def wait(tree, poll: float = 0.05):
    """``block_until_ready`` that Ctrl-C can interrupt.

    A thread blocked inside XLA never returns to Python, so a SIGINT would wait for the whole
    chunk (minutes for denoisers). Polling keeps the main thread in Python, where the
    KeyboardInterrupt is raised within ``poll`` seconds; the chunk in flight is abandoned and
    the finished ones are already stored.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    while not all(x.is_ready() for x in leaves):
        time.sleep(poll)
    return tree


def run_chunks(runner, chunks: list[Chunk], progress: bool = True) -> Iterator[tuple[Chunk, dict]]:
    """Runs chunks in order, yielding results as they complete, with a progress bar.

    Ctrl-C stops within a fraction of a second (``wait``), between chunks or inside one; the
    caller has stored every chunk yielded before it.
    """
    total = sum(len(c.index) for c in chunks)
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="pt", desc="memgen scan", dynamic_ncols=True)
    try:
        for c in chunks:
            t0 = time.perf_counter()
            out = runner.run(c)
            if bar is not None:
                bar.update(len(c.index))
                bar.set_postfix(n_pad=c.n_pad, s_per_pt=f"{(time.perf_counter() - t0) / len(c.index):.3g}")
            yield c, out
    finally:
        if bar is not None:
            bar.close()
