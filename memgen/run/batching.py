"""THE batching composition of memgen: ``jit(shard_map(lax.map(vmap(point))))``.

Every engine's one-point kernel, and ``denoisers.train_ensemble``, run through
``sharded_map``. Each device runs the same local program on fixed-size micro-batches, so
the arithmetic of a point never depends on how many points share its call or how many
devices share the points: results are bit-identical for any chunk size, device count or
resume history at a given micro-batch.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def sharded_map(fn: Callable, *, batch: int, devices: tuple) -> Callable:
    """``fn(per_point, shared) -> pytree`` for ONE point -> the same over a leading points axis.

    The returned callable takes ``per_point``, a pytree whose leaves have a leading points
    axis (length a multiple of ``batch * len(devices)``), sharded over ``devices`` and
    evaluated in micro-batches of ``batch`` points per device; and ``shared``, a pytree
    replicated on every device. It returns ``fn``'s pytree with the points axis leading.
    """

    def local(per, shared):
        return jax.lax.map(lambda p: fn(p, shared), per, batch_size=batch)

    P = jax.sharding.PartitionSpec
    mesh = jax.sharding.Mesh(np.array(devices), ("points",))
    # Points never communicate: varying-manual-axis checks only get in the way of kernels that
    # build constants (e.g. zero-initialised parameters) inside lax.scan carries.
    kernel = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("points"), P()), out_specs=P("points"),
                                   check_vma=False))
    split, everywhere = (jax.sharding.NamedSharding(mesh, p) for p in (P("points"), P()))

    executables: dict = {}  # input shapes -> compiled executable (ahead of time, so compiling is timed apart)

    def place(per_point, shared):  # inputs committed elsewhere (e.g. to device 0) are moved, not refused
        return jax.device_put(per_point, split), jax.device_put(shared, everywhere)

    def executable(per_point, shared):
        key = jax.tree.map(lambda x: (np.shape(x), str(getattr(x, "dtype", type(x)))), (per_point, shared))
        key = (jax.tree.structure((per_point, shared)), tuple(jax.tree.leaves(key)))
        if key not in executables:
            executables[key] = kernel.lower(per_point, shared).compile()
        return executables[key]

    def compile(per_point, shared) -> float:
        """Compiles for these inputs' shapes (a no-op when done); returns the seconds it took."""
        t0 = time.perf_counter()
        executable(*place(per_point, shared))
        return time.perf_counter() - t0

    def call(per_point, shared):
        per_point, shared = place(per_point, shared)
        return executable(per_point, shared)(per_point, shared)

    call.compile = compile
    call.executables = executables  # one per input shape: what has been compiled
    call.jitted = kernel  # for inspection (lowering, the LAPACK check of tests/test_trust.py)
    return call


def pad(index: np.ndarray, size: int) -> np.ndarray:
    """``index`` padded to ``size`` entries by repeating its last one (whole micro-batches)."""
    return np.concatenate([index, np.full(size - len(index), index[-1], dtype=index.dtype)])
