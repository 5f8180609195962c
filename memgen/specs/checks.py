"""Validation helpers of the specs: each raises ``ValueError`` naming the parameter and its range."""

from __future__ import annotations

import math
from typing import Any


def fail(name: str, rule: str, value: Any) -> None:
    raise ValueError(f"{name} must be {rule}, got {value!r}")


def as_tuple(name: str, value: Any) -> tuple[float, ...]:
    """Scalars and sequences of numbers -> tuple of floats (hashable, comparable)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        fail(name, "a number or a list of numbers", value)
    return out


def check_all(name: str, values: tuple[float, ...], rule: str, ok) -> None:
    if len(values) == 0:
        fail(name, "a non-empty list", list(values))
    for v in values:
        if not math.isfinite(v):
            fail(name, f"finite and {rule}", v)
        if not ok(v):
            fail(name, rule, v)


def check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        fail(name, f"an integer >= {lo}", value)


def check_directions(name: str, value: str) -> None:
    if value not in ("random", "axis"):
        fail(name, "'random' or 'axis'", value)


def check_size(name: str, value: Any) -> tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        fail(name, "a pair of integers (H, W) >= 4", value)
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 4:
            fail(name, "a pair of integers (H, W) >= 4", value)
    return (h, w)


def check_float(name: str, value: Any, rule: str, ok) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, rule, value)
    if not math.isfinite(value):
        fail(name, f"finite and {rule}", value)
    if not ok(value):
        fail(name, rule, value)
    return float(value)
