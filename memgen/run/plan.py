"""Planning: an engine's points -> static-shape buckets -> fixed micro-batches -> chunks.

The one memory refusal of memgen lives here, before any compute: what one device holds at
once is the engine's replicated inputs plus one micro-batch of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from .device import default_memory


# The bucket planner's two prices (order of magnitude, 2 CPU cores; they only rank plans): the
# seconds to compile one bucket's kernel and the flop rate of the points' linear algebra.
# Measured on the main job (d = 200, 24 loads, 2 cores): 4-6 s per compile, ~3e10 flop/s in this
# flop model.
COMPILE_SECONDS = 4.0
FLOPS_PER_SECOND = 2e10


def pad_groups(sizes, models: float, pad: Callable[[int], int], flops: Callable[[int], float],
               fixed: Callable[[int], float] | None = None) -> dict[int, int]:
    """Training-set size -> static padded size: the buckets that minimise compile + compute time.

    Each bucket is a run of consecutive sizes padded to ``pad`` of its largest, so a plan is a
    partition of the sorted sizes; dynamic programming finds the cheapest in O(G^2). Few
    buckets win when compute is small (the main job compiles 1 kernel, not 11); padding
    waste wins when the points are expensive (large d, many seeds). A function of the spec
    alone, so every point sees the same arithmetic whatever the machine.

    Args:
        sizes: the grid's training-set sizes, one per load (a size two loads share counts twice).
        models: models evaluated per load (seeds x swept values x 2 per pair).
        pad: the smallest admissible static size for a size (e.g. the Gram/covariance ladder).
        flops: estimated flops of one model at a static size.
        fixed: seconds a group padded to a static size costs once (default: a bucket's
            compile, ``COMPILE_SECONDS``); an engine's groups inside a bucket price less.
    """
    sizes = [int(n) for n in sizes]
    u = sorted(set(sizes))
    best, cut = [0.0] + [np.inf] * len(u), [0] * (len(u) + 1)
    for j in range(1, len(u) + 1):
        p, work = pad(u[j - 1]), 0.0
        for i in range(j, 0, -1):  # the bucket u[i-1 .. j-1], padded to p
            work += models * sizes.count(u[i - 1]) * flops(p)
            cost = best[i - 1] + (COMPILE_SECONDS if fixed is None else fixed(p)) + work / FLOPS_PER_SECOND
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    out, j = {}, len(u)
    while j:
        out.update({n: pad(u[j - 1]) for n in u[cut[j]:j]})
        j = cut[j]
    return out


def buckets_by_load(sizes, pads: dict[int, int], points: np.ndarray, axis: int) -> dict[int, np.ndarray]:
    """Flat point indices per static size, for an engine whose points have a gamma axis.

    Args:
        sizes: the training-set size of each load; pads: size -> static size (``pad_groups``).
        points: the flat point indices in the engine's point layout (``np.arange`` reshaped).
        axis: the gamma axis of ``points``: the points of load g are ``points`` at g along it.

    Returns:
        static size -> sorted flat indices, in increasing static size.
    """
    out: dict[int, list] = {}
    for g, n in enumerate(sizes):
        out.setdefault(pads[int(n)], []).extend(np.take(points, g, axis=axis).ravel())
    return {n_pad: np.sort(np.asarray(idx)) for n_pad, idx in sorted(out.items())}


@dataclass(frozen=True)
class Chunk:
    """Points (flat indices) that run together (one compiled program, one call per micro-step)
    and are stored as one file.

    Attributes:
        bucket: the engine's static-shape key of these points.
        index: flat point indices [k].
        size: kernel calls' inputs computed: the units (points, or ``unit``-point rows)
            padded to whole micro-batches on every device.
        batch: units evaluated at once on each device (the micro-batch).
        unit: None when the kernel computes one point; else the points one kernel input
            computes together (``index`` is then whole units, ``unit`` consecutive entries each).
    """

    bucket: Hashable
    index: np.ndarray
    size: int
    batch: int
    unit: int | None = None

    def units(self) -> np.ndarray:
        """The kernel's rows: ``index`` [k], or [k / unit, unit] for an engine with units."""
        return self.index if self.unit is None else self.index.reshape(-1, self.unit)


def plan(engine, *, itemsize: int, batch: int, devices: int, memory: int | None = None,
         chunk: int | None = None, done: np.ndarray | None = None) -> list[Chunk]:
    """The chunks of the points not yet ``done``, bucket by bucket.

    The micro-batch of a bucket is ``min(batch, units in the bucket)``: it depends only on
    the spec and ``batch`` (stored with the spec), never on memory, devices or what is done,
    so every point sees the same arithmetic whatever the chunking, device count or resume.
    An engine's bucket is either its points [k] or its units [k, p] (``Engine.buckets``): a
    unit is never split, so a chunk holds whole units.

    Raises:
        ValueError: when the replicated inputs plus one micro-batch do not fit ``memory``
            (default: ``device.default_memory()``), before any compute.
    """
    budget = default_memory() if memory is None else memory
    fixed = engine.shared_bytes(itemsize)
    out = []
    for bucket, idx in engine.buckets().items():
        b = int(min(batch, len(idx)))
        need = engine.point_bytes(bucket, itemsize)
        what = f"{engine.point_name} at {engine.describe(bucket)}"
        if fixed + need > budget:
            raise ValueError(f"memory={budget / 2**30:.3g} GiB is too small: one {what} needs about "
                             f"{(fixed + need) / 2**30:.3g} GiB; raise --memory or shrink the problem")
        if fixed + b * need > budget:
            raise ValueError(f"memory={budget / 2**30:.3g} GiB is too small for batch={b} at {what} "
                             f"({(fixed + b * need) / 2**30:.3g} GiB); lower --batch to "
                             f"{max(1, (budget - fixed) // need)} or raise --memory")
        if done is not None:  # a unit's points are written together: all done or none
            idx = idx[~done[idx]] if idx.ndim == 1 else idx[~done[idx].all(axis=1)]
        out += split(idx, bucket=bucket, batch=b, devices=devices, chunk=chunk, per_device=engine.per_device)
    return out


def split(idx: np.ndarray, *, bucket: Hashable, batch: int, devices: int, chunk: int | None,
          per_device: int = 4) -> list[Chunk]:
    """Cuts point indices [k] (or units [k, p]) into chunks of exactly ``chunk`` points (the last
    may hold fewer); with units, of the fewest whole units holding at least ``chunk`` points.

    ``chunk`` is what the user asked for: the unit of checkpointing and progress, rounded only
    up to whole units. The compute of a chunk is padded up to whole micro-batches of ``batch``
    units on every device (``Chunk.size``), so a chunk smaller than ``batch * devices`` wastes
    compute but stores exactly its own points. Default: ``per_device`` micro-batches per device.
    """
    step = batch * devices
    unit = None if idx.ndim == 1 else idx.shape[1]
    size = per_device * step if chunk is None else -(-chunk // (unit or 1))
    return [Chunk(bucket, idx[i:i + size].ravel(), -(-len(idx[i:i + size]) // step) * step, batch, unit)
            for i in range(0, len(idx), size)]


def for_devices(chunk: Chunk, devices: int) -> Chunk:
    """``chunk`` padded for ``devices`` devices instead (the process of a distributed scan that
    runs it may have another device count than the plan's); its points and micro-batch stay."""
    step = chunk.batch * devices
    return Chunk(chunk.bucket, chunk.index, -(-len(chunk.units()) // step) * step, chunk.batch, chunk.unit)
