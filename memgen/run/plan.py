"""Planning: an engine's points -> static-shape buckets -> fixed micro-batches -> chunks.

The one memory refusal of memgen lives here, before any compute: what one device holds at
once is the engine's replicated inputs plus one micro-batch of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np

from .device import default_memory


@dataclass(frozen=True)
class Chunk:
    """Points (flat indices) that run as one compiled call and are stored as one file.

    Attributes:
        bucket: the engine's static-shape key of these points.
        index: flat point indices [k].
        size: points computed, ``k`` padded to whole micro-batches on every device.
        batch: points evaluated at once on each device (the micro-batch).
    """

    bucket: Hashable
    index: np.ndarray
    size: int
    batch: int


def plan(engine, *, itemsize: int, batch: int, devices: int, memory: int | None = None,
         chunk: int | None = None, done: np.ndarray | None = None) -> list[Chunk]:
    """The chunks of the points not yet ``done``, bucket by bucket.

    The micro-batch of a bucket is ``min(batch, points in the bucket)``: it depends only on
    the spec and ``batch`` (stored with the spec), never on memory, devices or what is done,
    so every point sees the same arithmetic whatever the chunking, device count or resume.

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
        if done is not None:
            idx = idx[~done[idx]]
        out += split(idx, bucket=bucket, batch=b, devices=devices, chunk=chunk, per_device=engine.per_device)
    return out


def split(idx: np.ndarray, *, bucket: Hashable, batch: int, devices: int, chunk: int | None,
          per_device: int = 4) -> list[Chunk]:
    """Cuts point indices into chunks of exactly ``chunk`` points (the last may hold fewer).

    ``chunk`` is what the user asked for: the unit of checkpointing and progress, never
    rounded. The compute of a chunk is padded up to whole micro-batches of ``batch`` points on
    every device (``Chunk.size``), so a chunk smaller than ``batch * devices`` wastes compute
    but stores exactly its own points. Default: ``per_device`` micro-batches per device.
    """
    step = batch * devices
    size = per_device * step if chunk is None else chunk
    return [Chunk(bucket, idx[i:i + size], -(-len(idx[i:i + size]) // step) * step, batch)
            for i in range(0, len(idx), size)]


def for_devices(chunk: Chunk, devices: int) -> Chunk:
    """``chunk`` padded for ``devices`` devices instead (the process of a distributed scan that
    runs it may have another device count than the plan's); its points and micro-batch stay."""
    step = chunk.batch * devices
    return Chunk(chunk.bucket, chunk.index, -(-len(chunk.index) // step) * step, chunk.batch)
