"""Model kinds, one engine each, and the ONE registry that maps a model spec to its engine.

Adding a model kind is one package (its specs and an ``Engine``, see ``protocol``) plus one
line in ``_ENGINES``; ``memgen.scan``, the store, resume, load and the CLI need no edit.
Engines are imported when first used, so ``import memgen`` does not load every model's
dependencies.
"""

from __future__ import annotations

import importlib

from .protocol import Engine as Engine, point_count as point_count

# model spec kind -> "module:EngineClass"
_ENGINES = {
    "Linear": "memgen.engines.spectral.engine:SpectralEngine",
    "LinearDiffusion": "memgen.engines.spectral.engine:SpectralEngine",
    "OneStep": "memgen.engines.onestep.engine:OneStepEngine",
    "ConvDenoiser": "memgen.engines.denoisers.engine:DenoiserEngine",
}


def build(data, model, grid, dtype) -> Engine:
    """The engine of ``model`` over ``grid`` (validates the combination, ValueError naming it)."""
    kind = type(model).__name__
    if kind not in _ENGINES:
        raise ValueError(f"model must be one of {', '.join(sorted(_ENGINES))}, got {kind}")
    module, cls = _ENGINES[kind].split(":")
    return getattr(importlib.import_module(module), cls)(data, model, grid, dtype)


__all__ = ["Engine", "build", "point_count"]
