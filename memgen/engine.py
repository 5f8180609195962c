"""``memgen.scan``: validate, plan, run chunk by chunk, store, assemble.

Contract: the one entry point a user calls. Validation happens here, before any compute;
batching and devices are ``grid.py``'s; files are ``store.py``'s.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import grid as grid_mod
from . import store as store_mod
from .config import Grid, Linear, PowerLaw, Spiked
from .denoisers import ConvDenoiser, ImageField, Images, scan_denoisers

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
         overwrite: bool = False, resume: bool = False) -> xr.Dataset:
    """Order parameters over a whole (extra?, gamma, lam, seed) grid.

    Args:
        data: ``Spiked`` or ``PowerLaw``.
        model: ``Linear`` (default ``Linear()``).
        grid: ``Grid`` (default ``Grid()``).
        out: store directory, written chunk by chunk (None: in memory only).
        x64: compute in float64 (turns on JAX's x64 flag for the program); default float32.
        memory: budget for one chunk, bytes or '4GB' (default: from the device).
        chunk: points per chunk, the unit of checkpointing and progress (default: four
            micro-batches per device).
        batch: points evaluated at once per device (lowered to fit ``memory``). Results are
            bit-identical for any chunk size, device count and resume history at equal batch.
        progress: show a progress bar.
        overwrite, resume: what to do with an existing non-empty ``out``.

    Returns:
        ``xarray.Dataset`` with dims (beta|alpha)?, gamma, lam, seed; variables
        m, q, w2, m_kad, mem_frac [..., gamma, lam, seed] and Q, top_eig [..., gamma, seed].

    Raises:
        ValueError: on any invalid input, before compute.
    """
    model = Linear() if model is None else model
    grid = Grid() if grid is None else grid
    if isinstance(model, ConvDenoiser) or isinstance(data, (ImageField, Images)):
        return _scan_denoisers(data, model, grid, out=out, x64=x64, chunk=chunk, progress=progress,
                               overwrite=overwrite, resume=resume)
    if not isinstance(data, (Spiked, PowerLaw)):
        raise ValueError(f"data must be Spiked or PowerLaw, got {type(data).__name__}")
    if not isinstance(model, Linear):
        raise ValueError(f"model must be Linear, got {type(model).__name__}")
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a memgen.Grid, got {type(grid).__name__}")
    grid.check(data)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if overwrite and resume:
        raise ValueError("overwrite and resume are exclusive: pick one")
    budget = None if memory is None else parse_memory(memory)
    if x64:
        enable_x64()
    dtype = jnp.float64 if x64 else jnp.float32

    ax = grid_mod.axes_of(grid)
    spec = store_mod.spec_dict(data, model, grid, dtype, batch)
    store = None
    done = None
    flat = {k: np.full((ax.size, len(ax.lam)) if lam else (ax.size,), np.nan, jnp.dtype(dtype))
            for k, lam in grid_mod.VARIABLES.items()}
    if out is not None:  # resumed points come from disk, once
        store = store_mod.Store(out, spec, overwrite=overwrite, resume=resume)
        flat, done = store_mod.read_chunks(store.path, ax.size, grid_mod.VARIABLES, len(ax.lam), jnp.dtype(dtype))
    devices = jax.device_count()
    chunks = grid_mod.plan(data, model, grid, itemsize=jnp.dtype(dtype).itemsize, memory=budget,
                           chunk=chunk, done=done, devices=devices, batch=batch)
    runner = grid_mod.Runner(data, model, grid, dtype)
    try:
        for c, res in grid_mod.run_chunks(runner, chunks, progress=progress):
            if store is not None:
                store.write_chunk(c.index, res)
            for k, v in res.items():
                flat[k][c.index] = v
    except KeyboardInterrupt:
        if store is not None:
            print(f"\ninterrupted: finished chunks are saved; continue with --resume {out}")
        raise
    ds = store_mod.to_dataset(flat, grid_mod.VARIABLES, spec, ax.shape, ax.extra, ax.gamma, ax.lam, data.d)
    ds.attrs["dtype"] = str(jnp.dtype(dtype))
    ds.attrs["matmul_precision"] = "highest"
    if store is not None:
        store.finish(ds)
    return ds


def _scan_denoisers(data, model, grid, *, out, x64, chunk, progress, overwrite, resume) -> xr.Dataset:
    """Denoiser scans: trained ensembles (``memgen.denoisers``), stored as one finished file.

    Training a chunk of models is one compiled call; the store is written when the scan ends
    (chunk-level resume is the linear engine's only, for now).
    """
    if not isinstance(model, ConvDenoiser):
        raise ValueError(f"model must be ConvDenoiser for image data, got {type(model).__name__}")
    if not isinstance(data, (ImageField, Images)):
        raise ValueError(f"data must be ImageField or Images for ConvDenoiser, got {type(data).__name__}")
    if resume:
        raise ValueError("resume is not supported for denoiser scans yet; use overwrite or a new out")
    if x64:
        enable_x64()
    dtype = jnp.float64 if x64 else jnp.float32
    store = None
    if out is not None:
        store = store_mod.Store(out, store_mod.spec_dict(data, model, grid, dtype), overwrite=overwrite)
    ds = scan_denoisers(data, model, grid, progress=progress, chunk=chunk, dtype=dtype)
    if store is not None:
        store.finish(ds)
    return ds
