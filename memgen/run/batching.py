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

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
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


def _hollowed(per_point, shared, placed_dtype):
    """``(per_point, shared)`` with each leaf of size 0 replaced by None, and ``hollow``: a
    static note of what they were (tree position, shape without the points axis for
    ``per_point``, dtype as placed) from which :func:`_filled` makes them inside the program.

    An input of size 0 carries nothing, and XLA's SPMD partitioner in jaxlib 0.11.2 crashes
    the process (SIGSEGV, CPU) on a program with a sharded or replicated input of size 0:
    PowerLaw data without spikes pass a [points, 0] spike strength. A size-0 array built
    inside the program is fine there.
    """
    def note(tree, per: bool):
        leaves, treedef = jax.tree.flatten(tree)
        empty = tuple((i, tuple(np.shape(x)[1:] if per else np.shape(x)), placed_dtype(x))
                      for i, x in enumerate(leaves) if np.size(x) == 0)
        if not empty:
            return tree, None
        gone = {i for i, _, _ in empty}
        return jax.tree.unflatten(treedef, [None if i in gone else x for i, x in enumerate(leaves)]), (treedef, empty)

    per_point, per_note = note(per_point, True)
    shared, shared_note = note(shared, False)
    return per_point, shared, (per_note, shared_note)


def _filled(per, shared, hollow, batch: int):
    """The inverse of :func:`_hollowed` inside one device's program (``batch`` points there)."""
    def fill(tree, note, lead):
        if note is None:
            return tree
        treedef, empty = note
        # a leaf replaced by None is absent from the flattened leaves: put each back at its index
        leaves = jax.tree.leaves(tree)
        made = {i: jnp.zeros(lead + shape, dtype) for i, shape, dtype in empty}
        full, it = [], iter(leaves)
        for i in range(treedef.num_leaves):
            full.append(made[i] if i in made else next(it))
        return jax.tree.unflatten(treedef, full)

    per_note, shared_note = hollow
    return fill(per, per_note, (batch,)), fill(shared, shared_note, ())


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
    batched = _batched(fn, batch)

    def local(per, shared, hollow):  # one device's part: the empty leaves made here
        return batched(*_filled(per, shared, hollow, batch))

    # Points never communicate: varying-manual-axis checks only get in the way of kernels that
    # build constants (e.g. zero-initialised parameters) inside lax.scan carries.
    kernel = jax.jit(lambda per, shared, hollow: jax.shard_map(
        functools.partial(local, hollow=hollow), mesh=mesh, in_specs=(P("points"), P()), out_specs=P("points"),
        check_vma=False)(per, shared), static_argnums=2)
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

    def key_of(per_step, shared, hollow):  # keyed by the inputs as placed, computed without placing them
        key = jax.tree.map(lambda x: (np.shape(x), placed_dtype(x)), (per_step, shared))
        return jax.tree.structure((per_step, shared)), tuple(jax.tree.leaves(key)), hollow

    def executable(per_step, shared, hollow):
        key = key_of(per_step, shared, hollow)
        if key not in executables:
            executables[key] = kernel.lower(per_step, shared, hollow).compile()
        return executables[key]

    def prepared(per_point, shared):
        """The steps' starts (a partial step refused first), and the inputs without their
        leaves of size 0 with the note that makes them inside the program (``_hollowed``)."""
        steps = starts(per_point)
        return (steps, *_hollowed(per_point, shared, placed_dtype))

    def compiled(per_point, shared) -> bool:
        """Whether these inputs' shapes are compiled already (then ``compile`` is a no-op)."""
        _, per_point, shared, hollow = prepared(per_point, shared)
        return key_of(jax.tree.map(lambda x: x[:step], per_point), shared, hollow) in executables

    def compile(per_point, shared) -> float:
        """Compiles for these inputs' shapes (a no-op when done); returns the seconds it took."""
        t0 = time.perf_counter()
        _, per_point, shared, hollow = prepared(per_point, shared)
        executable(placed_step(per_point, 0), jax.device_put(shared, everywhere), hollow)
        return time.perf_counter() - t0

    def call(per_point, shared):
        steps, per_point, shared, hollow = prepared(per_point, shared)
        shared = jax.device_put(shared, everywhere)  # inputs committed elsewhere are moved, not refused
        outs = []
        for i in steps:  # every step dispatched before any is awaited
            per = placed_step(per_point, i)
            outs.append(executable(per, shared, hollow)(per, shared))
        return outs

    def lower(per_point, shared):
        """One step's program for these inputs, lowered (for inspection: the LAPACK check of
        tests/test_trust.py)."""
        _, per_point, shared, hollow = prepared(per_point, shared)
        return kernel.lower(placed_step(per_point, 0), jax.device_put(shared, everywhere), hollow)

    call.compile = compile
    call.compiled = compiled
    call.executables = executables  # one per step shape: what has been compiled
    call.lower = lower
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
