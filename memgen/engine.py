"""``memgen.scan``: validate, plan, run chunk by chunk, store, assemble.

Contract: the one entry point a user calls. Validation happens here, before any compute;
batching and devices are ``grid.py``'s; files are ``store.py``'s.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import grid as grid_mod
from . import store as store_mod
from . import theory as theory_mod
from .config import Grid, Linear, PowerLaw, Spiked
from .denoisers import ConvDenoiser, ImageField, Images
from .denoisers import engine as den_engine

_PARSE_MEMORY = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
                 "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value) -> int:
    """'4GB', '512MiB', 1e9 -> bytes (int > 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        num, unit = float(value), ""
    else:
        s = str(value).strip().upper().replace(" ", "")
        i = len(s) - len(s.lstrip("0123456789.e+-E"))
        num_s, unit = s[:i], s[i:]
        try:
            num = float(num_s)
        except ValueError:
            num = -1.0
    if unit not in _PARSE_MEMORY or not np.isfinite(num) or num * _PARSE_MEMORY.get(unit, 0) < 1:
        raise ValueError(f"memory must be a positive size such as 4GB or 512MiB, got {value!r}")
    return int(num * _PARSE_MEMORY[unit])


def enable_x64() -> None:
    """Turns on float64 for the whole program (call at start, before creating arrays)."""
    jax.config.update("jax_enable_x64", True)


def scan(data, model=None, grid: Grid | None = None, *, out: str | os.PathLike | None = None,
         x64: bool = False, memory=None, chunk: int | None = None, batch: int = 8, progress: bool = True,
         overwrite: bool = False, resume: bool = False, theory: bool = False) -> xr.Dataset:
    """Order parameters over a whole (extra?, gamma, lam, seed) grid.

    Args:
        data: ``Spiked`` or ``PowerLaw`` (linear model), ``ImageField`` or ``Images``
            (denoisers).
        model: ``Linear`` (default) or ``ConvDenoiser``.
        grid: ``Grid`` (default ``Grid()``).
        out: store directory, written chunk by chunk (None: in memory only).
        x64: compute in float64 (turns on JAX's x64 flag for the program); default float32.
        memory: budget for what one device holds at once, bytes or '4GB' (default: from the
            device).
        chunk: points per chunk, the unit of checkpointing and progress (default: four
            micro-batches per device; one for denoisers).
        batch: points evaluated at once per device (a point is a pair of models). Results
            are bit-identical for any chunk size, device count and resume history at equal
            batch; a batch over ``memory`` is refused before compute.
        progress: show a progress bar.
        overwrite, resume: what to do with an existing non-empty ``out`` (overwrite deletes
            only a store memgen created, and only what memgen wrote into it).
        theory: also store the asymptotic theory as ``<var>_theory`` (computed before the
            scan starts, so a theory error never arrives after the compute; kept on resume).

    Returns:
        ``xarray.Dataset``. Linear: dims (beta|alpha)?, gamma, lam, seed; variables m, q,
        w2, m_kad, mem_frac [..., gamma, lam, seed] and Q, top_eig [..., gamma, seed].
        Denoisers: m, m_heldout, q, Q, loss [gamma, lam, seed] and mse, mse_wiener, mse_empirical
        [gamma, lam, seed, sigma].

    Raises:
        ValueError: on any invalid input, before compute.
        FloatingPointError: a non-finite order parameter, naming its grid coordinates.
    """
    model = Linear() if model is None else model
    grid = Grid() if grid is None else grid
    if isinstance(model, ConvDenoiser) or isinstance(data, (ImageField, Images)):
        den_engine.check(data, model, grid)
    else:
        if not isinstance(data, (Spiked, PowerLaw)):
            raise ValueError(f"data must be Spiked or PowerLaw, got {type(data).__name__}")
        if not isinstance(model, Linear):
            raise ValueError(f"model must be Linear, got {type(model).__name__}")
        if not isinstance(grid, Grid):
            raise ValueError(f"grid must be a memgen.Grid, got {type(grid).__name__}")
        grid.check(data)
    check_run_options(chunk, batch, overwrite, resume)
    budget = None if memory is None else parse_memory(memory)
    th = theory_mod.theory(data, grid) if theory else None  # fails before any compute
    if x64:
        enable_x64()
    return _execute(data, model, grid, jnp.float64 if x64 else jnp.float32, out=out, memory=budget,
                    chunk=chunk, batch=batch, progress=progress, overwrite=overwrite, resume=resume, theory=th)


def check_run_options(chunk, batch, overwrite, resume) -> None:
    """Validates the run options shared by both engines (ValueError naming the option)."""
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if overwrite and resume:
        raise ValueError("overwrite and resume are exclusive: pick one")


def _execute(data, model, grid, dtype, *, out, memory, chunk, batch, progress, overwrite, resume,
             theory: xr.Dataset | None = None) -> xr.Dataset:
    """Plan (refusing what does not fit, before compute), then run the missing chunks into the store."""
    dtype = jnp.dtype(dtype)
    spec = store_mod.spec_dict(data, model, grid, dtype, batch, theory=theory is not None)
    devices = jax.device_count()
    size, shapes, assemble = store_mod.layout(spec, theory)
    if isinstance(model, ConvDenoiser):
        runner = den_engine.Runner(data, model, grid, dtype)

        def make_plan(done):
            return den_engine.plan(runner, batch=batch, memory=memory, chunk=chunk, done=done, devices=devices)
    else:
        runner = grid_mod.Runner(data, model, grid, dtype)

        def make_plan(done):
            return grid_mod.plan(data, model, grid, itemsize=dtype.itemsize, memory=memory, chunk=chunk,
                                 done=done, devices=devices, batch=batch)

    chunks = make_plan(None)  # memory and chunk errors before the store is touched
    if out is None:
        flat = {k: np.full((size, *shp), np.nan, dtype) for k, shp in shapes.items()}
        for c, res in grid_mod.run_chunks(runner, chunks, progress=progress):
            for k, v in res.items():
                flat[k][c.index] = v
        return assemble(flat)
    with store_mod.Store(out, spec, overwrite=overwrite, resume=resume) as store:
        flat, done = store.read(size, shapes, dtype)  # resumed points come from disk, once
        try:
            for c, res in grid_mod.run_chunks(runner, make_plan(done), progress=progress):
                store.write_chunk(c.index, res)
                for k, v in res.items():
                    flat[k][c.index] = v
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished chunks are saved; continue with --resume {out}", file=sys.stderr)
            raise
        ds = assemble(flat)
        store.finish(ds)
    return ds
