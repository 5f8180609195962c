"""What an engine provides: everything ``memgen.run``, the store and the CLI need of a model kind.

A model kind (the linear generator, convolutional denoisers, ...) is an engine: a class
built from ``(data, model, grid, dtype)`` that says what ONE grid point is and how to
compute it. Everything else - planning, batching, devices, chunks, the store, resume, load,
the theory beside the simulation - is written once and is generic over engines. Register a
new kind in ``memgen.engines._ENGINES``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Hashable, Mapping, Protocol

import numpy as np


class Engine(Protocol):
    """A model kind over a grid.

    Attributes:
        name: stored as the ``memgen_engine`` attribute (e.g. ``"linear"``).
        point_name: what one point is, for messages (e.g. ``"pair of linear models"``).
        per_device: micro-batches per device in a default chunk.
        batch: the default micro-batch on an accelerator, points evaluated at once per device
            (``scan(batch=None)``; 1 on a CPU: ``memgen.scan.default_batch``).
        values_per_point: grid values (combinations of gamma, lam, seed, ...) one point
            computes, e.g. every lam of a linear fit; progress counts grid values.
        axes: the point axes in flat (C) order, each ``(dim, values)``; a point's flat index
            is ``np.ravel_multi_index`` over their lengths.
        variables: stored variable -> its trailing dims beyond the point axes (e.g.
            ``("lam",)``); every variable is declared in ``memgen.schema``.
        coords: values of every dim (point axes and trailing dims), plus non-dimension
            coordinates as ``(dim, values)`` (e.g. ``"n": ("gamma", [...])``).
        arithmetic: the revision of the kernels' arithmetic, stored with the spec when not 1:
            raised whenever a change rounds differently, so that a store begun by the old
            kernels is never finished by the new ones (``store.spec_dict``).
    """

    name: str
    point_name: str
    per_device: int
    batch: int
    values_per_point: int
    axes: tuple[tuple[str, tuple], ...]
    variables: Mapping[str, tuple[str, ...]]
    coords: Mapping[str, Any]
    arithmetic: int

    def validate(self) -> None:
        """Checks that need more than the specs (e.g. enough images on disk); before compute."""

    def buckets(self) -> dict[Hashable, np.ndarray]:
        """Static-shape key -> the flat indices of its points [k] (one compiled kernel each), or
        of its units [k, p]: p points that one kernel call computes together (e.g. a padding
        bucket's loads of one seed, from one draw), never split over chunks."""

    def describe(self, bucket: Hashable) -> str:
        """A bucket in words, for memory errors (e.g. ``"d=400, n_pad=800"``)."""

    def point_bytes(self, bucket: Hashable, itemsize: int) -> int:
        """Estimated peak device bytes of one point in flight."""

    def shared_bytes(self, itemsize: int) -> int:
        """Device bytes of the replicated inputs (every device holds them)."""

    def inputs(self, index: np.ndarray) -> Any:
        """Per-point host inputs of these flat indices [k] (or units [k, p]): a pytree of arrays [k, ...]."""

    def shared(self) -> Any:
        """Replicated inputs (a pytree), built once per run."""

    def static(self) -> Hashable:
        """Everything the kernel closes over (hashable): the compile-cache key with the bucket."""

    @staticmethod
    def kernel(static: Hashable, bucket: Hashable) -> Callable[[Any, Any], dict]:
        """``f(per_point, shared) -> {variable: array [*trailing]}`` for ONE point (or
        ``[p, *trailing]`` for one unit of p points, in the unit's order): pure, no jit/vmap."""


def spec_kernel(point: Callable, static: Hashable, **fixed) -> Callable[[Any, Any], dict]:
    """The usual ``Engine.kernel``: ``point(*per_point, *shared, spec=, model=, dtype=, **fixed)``.

    For engines whose ``static()`` is ``(data spec, model spec, dtype name)``; ``fixed`` holds
    the bucket's static shapes (e.g. ``n_pad``).
    """
    data, model, dtype = static
    fn = partial(point, spec=data, model=model, dtype=np.dtype(dtype), **fixed)
    return lambda per, shared: fn(*per, *shared)


def point_count(engine: Engine) -> int:
    """Number of points of an engine's grid."""
    return int(np.prod([len(v) for _, v in engine.axes]))
