"""THE batching composition of memgen: ``jit(shard_map(vmap(point)))``, called per micro-step.

Every engine's one-point kernel, and ``denoisers.train_ensemble``, run through
``sharded_map``. The compiled program evaluates ONE micro-batch of ``batch`` points on every
device; a chunk of any size is a sequence of such calls (dispatched asynchronously, so they
pipeline). So a bucket compiles once whatever its chunk sizes, and the arithmetic of a point
never depends on how many points share its chunk or how many devices share the points:
results are bit-identical for any chunk size, device count or resume history at a given
micro-batch.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def _batched(fn: Callable, batch: int) -> Callable:
    """``fn`` over a leading axis of ``batch`` points: ``vmap``, or for one point a plain call.

    A vmap over a single point is no free reshape: its batched matmuls with a transposed
    operand made XLA lay a training set out again, so the Krylov point at d = 16384 took
    12.2 GiB instead of 4.2 (XLA's memory analysis of the compiled step; the run was OOM-killed).
    """
    if batch > 1:
        return jax.vmap(fn, in_axes=(0, None))

    def one(per, shared):
        out = fn(jax.tree.map(lambda x: x[0], per), shared)
        return jax.tree.map(lambda x: x[None], out)

    return one


def sharded_map(fn: Callable, *, batch: int, devices: tuple) -> Callable:
    """``fn(per_point, shared) -> pytree`` for ONE point -> the same over a leading points axis.

    The returned callable takes ``per_point``, a pytree whose leaves have a leading points
    axis (length a multiple of ``batch * len(devices)``), and ``shared``, a pytree replicated
    on every device. Each step of ``batch * len(devices)`` points is one call of one compiled
    program: ``batch`` points per device, vmapped. It returns the list of the steps' outputs,
    ``fn``'s pytree with the points axis leading and sharded over the devices, every step
    dispatched before any is awaited; :func:`gather` joins them on the host.
    """
    P = jax.sharding.PartitionSpec
    mesh = jax.sharding.Mesh(np.array(devices), ("points",))
    step = batch * len(devices)
    # Points never communicate: varying-manual-axis checks only get in the way of kernels that
    # build constants (e.g. zero-initialised parameters) inside lax.scan carries.
    kernel = jax.jit(jax.shard_map(_batched(fn, batch), mesh=mesh, in_specs=(P("points"), P()),
                                   out_specs=P("points"), check_vma=False))
    split, everywhere = (jax.sharding.NamedSharding(mesh, p) for p in (P("points"), P()))
    executables: dict = {}  # input shapes of one step -> compiled executable (ahead of time, timed apart)

    def starts(per_point) -> range:
        total = len(jax.tree.leaves(per_point)[0])
        if total % step:
            raise ValueError(f"{total} points are not whole steps of batch={batch} x {len(devices)} devices")
        return range(0, total, step)

    def placed_step(per_point, i: int):
        return jax.device_put(jax.tree.map(lambda x: x[i:i + step], per_point), split)

    def placed_dtype(x) -> str:  # what device_put makes of x's dtype (int64 -> int32 without x64)
        dtype = getattr(x, "dtype", None)
        dtype = np.asarray(x).dtype if dtype is None else dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.extended):  # PRNG keys
            return str(dtype)
        return str(jax.dtypes.canonicalize_dtype(dtype))

    def key_of(per_step, shared):  # keyed by the inputs as placed, computed without placing them
        key = jax.tree.map(lambda x: (np.shape(x), placed_dtype(x)), (per_step, shared))
        return jax.tree.structure((per_step, shared)), tuple(jax.tree.leaves(key))

    def executable(per_step, shared):
        key = key_of(per_step, shared)
        if key not in executables:
            executables[key] = kernel.lower(per_step, shared).compile()
        return executables[key]

    def compiled(per_point, shared) -> bool:
        """Whether these inputs' shapes are compiled already (then ``compile`` is a no-op)."""
        starts(per_point)
        return key_of(jax.tree.map(lambda x: x[:step], per_point), shared) in executables

    def compile(per_point, shared) -> float:
        """Compiles for these inputs' shapes (a no-op when done); returns the seconds it took."""
        t0 = time.perf_counter()
        starts(per_point)  # refuses a partial step before compiling
        executable(placed_step(per_point, 0), jax.device_put(shared, everywhere))
        return time.perf_counter() - t0

    def call(per_point, shared):
        shared = jax.device_put(shared, everywhere)  # inputs committed elsewhere are moved, not refused
        outs = []
        for i in starts(per_point):  # every step dispatched before any is awaited
            per = placed_step(per_point, i)
            outs.append(executable(per, shared)(per, shared))
        return outs

    call.compile = compile
    call.compiled = compiled
    call.executables = executables  # one per step shape: what has been compiled
    call.jitted = kernel  # for inspection (lowering, the LAPACK check of tests/test_trust.py)
    call.step = step
    return call


def gather(steps: list):
    """The steps' outputs of a ``sharded_map`` call joined on the host: one pytree of NumPy arrays
    with the points axis leading. Blocks until they are computed (``loop.wait`` first, to keep
    Ctrl-C).

    Joined on the host, not on a device: concatenating the steps where they lie, sharded over
    the devices, is a collective (an all-to-all) that XLA:CPU aborts when one device's queue of
    steps runs 40 s behind another's (seen with UNets on 2 CPU devices), and a join on one
    device compiles a concatenate per leaf and shape (1.3 s of a 7 s cached scan).
    """
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *steps)


def pad(index: np.ndarray, size: int) -> np.ndarray:
    """``index`` [k, ...] padded to ``size`` rows by repeating its last one (whole micro-batches)."""
    return np.concatenate([index, np.repeat(index[-1:], size - len(index), axis=0)])
