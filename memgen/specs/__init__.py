"""Frozen, validated specifications: what data, which model, which grid.

Every spec validates itself at construction and raises ``ValueError`` naming the
parameter and its allowed range, so bad input fails before any compute starts.
The CLI builds the very same objects, so its validation is the library's.

Data (``data``), models (``models``) and the grid (``grid``); validation helpers in
``checks``. Specs round-trip through plain dicts (``to_dict`` / ``from_dict``), which is how a
results store remembers what produced it (``store.spec_from_attrs``).
"""

from __future__ import annotations

import dataclasses
from typing import Union

from .data import BUILTIN_IMAGES, ImageField, Images, Isotropic, PowerLaw, Spiked, shell_sizes
from .grid import Grid, n_samples
from .models import ConvDenoiser, Linear, LinearDiffusion, OneStep

DataSpec = Union[Spiked, PowerLaw, Isotropic, ImageField, Images]
ModelSpec = Union[Linear, LinearDiffusion, OneStep, ConvDenoiser]

# The ONE registry of spec kinds (the "kind" tag of to_dict).
SPECS = {cls.__name__: cls for cls in (Spiked, PowerLaw, Isotropic, ImageField, Images, Linear, LinearDiffusion,
                                       OneStep, ConvDenoiser, Grid)}

def to_dict(spec) -> dict:
    """Spec -> JSON-able dict with a ``kind`` tag."""
    out = {"kind": type(spec).__name__}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if "absent" in f.metadata and v == f.metadata["absent"]:
            continue  # a field added later, at the value its absence means: old stores keep their hash
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def from_dict(d: dict):
    """Inverse of ``to_dict`` (ValueError on a missing kind, an unknown kind or unknown fields)."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ValueError(f"a spec must be a dict with a 'kind' key, got {d!r}")
    d = dict(d)
    kind = d.pop("kind")
    if kind not in SPECS:
        raise ValueError(f"unknown spec kind {kind!r}; known: {sorted(SPECS)}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(SPECS[kind])})
    if unknown:
        raise ValueError(f"{kind}: unknown fields {unknown}")
    for f in dataclasses.fields(SPECS[kind]):  # what a missing later-added field meant
        if "absent" in f.metadata and f.name not in d:
            d[f.name] = f.metadata["absent"]
    return SPECS[kind](**d)


def replace(spec, **changes):
    """``dataclasses.replace`` that re-runs validation."""
    return dataclasses.replace(spec, **changes)


__all__ = ["Spiked", "PowerLaw", "Isotropic", "ImageField", "Images", "Linear", "LinearDiffusion", "OneStep",
           "ConvDenoiser", "Grid", "n_samples", "shell_sizes",
           "BUILTIN_IMAGES", "to_dict", "from_dict", "replace", "DataSpec", "ModelSpec", "SPECS"]
