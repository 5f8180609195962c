"""Results on disk: chunk files written atomically, resume, and labelled xarray Datasets.

A store is a directory::

    DIR/spec.json            what produced it (data, model, grid, dtype); checked on resume
    DIR/chunks/*.npz         one file per finished chunk: flat point indices + every variable
    DIR/results.nc           the assembled Dataset (netCDF), written when the scan completes

Each chunk file is written to a temporary name and renamed (atomic on POSIX), so a scan killed
at any moment leaves only whole chunks; ``--resume`` recomputes only the points no chunk holds.
Because every random draw depends on a point's coordinates alone, the resumed result is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from . import config

# Dimension names, shared with memgen.theory and memgen.plots.
GAMMA, LAM, SEED, BETA, ALPHA, N = "gamma", "lam", "seed", "beta", "alpha", "n"
SPEC_ATTR = "memgen_spec"
KIND_ATTR = "memgen_kind"
RESULTS = "results.nc"


def spec_dict(data, model, grid, dtype, batch: int | None = None) -> dict:
    """Everything that fixes the numbers: specs, dtype and the micro-batch (see grid.plan)."""
    out = {"data": config.to_dict(data), "model": config.to_dict(model), "grid": config.to_dict(grid),
           "dtype": str(np.dtype(dtype))}
    if batch is not None:
        out["batch"] = batch
    return out


def spec_from_attrs(ds: xr.Dataset):
    """(data, model, grid) rebuilt from a Dataset's attrs."""
    spec = json.loads(ds.attrs[SPEC_ATTR])
    return tuple(config.from_dict(spec[k]) for k in ("data", "model", "grid"))


def _environment() -> dict:
    import jax

    from . import __version__

    dev = jax.devices()[0]
    return {"memgen_version": __version__, "jax_version": jax.__version__,
            "numpy_version": np.__version__, "device": f"{dev.platform}:{dev.device_kind}",
            "device_count": jax.device_count(), "python": platform.python_version()}


class Store:
    """A results directory being written (or resumed)."""

    def __init__(self, path: str | os.PathLike, spec: dict, *, overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        self.spec = spec
        self.chunks = self.path / "chunks"
        if self.path.exists() and any(self.path.iterdir()):
            if overwrite:
                if not (self.path / "spec.json").exists():  # never delete what memgen did not write
                    raise ValueError(f"overwrite: {str(self.path)!r} is not a memgen store (no spec.json); "
                                     "refusing to delete it, choose another out")
                shutil.rmtree(self.path)
            elif not resume:
                raise ValueError(f"out={str(self.path)!r} exists and is not empty; pass overwrite=True "
                                 "(--overwrite) to replace it or resume=True (--resume) to finish it")
            else:
                self._check_spec()
        elif resume:
            raise ValueError(f"resume: nothing to resume at {str(self.path)!r} (no such store)")
        self.chunks.mkdir(parents=True, exist_ok=True)
        if not (self.path / "spec.json").exists():
            _atomic_write(self.path / "spec.json", json.dumps(spec, indent=1).encode())

    def _check_spec(self) -> None:
        f = self.path / "spec.json"
        if not f.exists():
            raise ValueError(f"resume: {str(self.path)!r} is not a memgen store (no spec.json)")
        old = json.loads(f.read_text())
        if old != self.spec:
            diff = [k for k in sorted(set(old) | set(self.spec)) if old.get(k) != self.spec.get(k)]
            raise ValueError(f"resume: the store at {str(self.path)!r} was written by another spec "
                             f"(differs in {', '.join(diff)}); use --overwrite or another --out")

    def write_chunk(self, index: np.ndarray, values: dict[str, np.ndarray]) -> None:
        buf = self.chunks / f"c{int(index[0]):09d}-{uuid.uuid4().hex[:8]}.npz"
        tmp = buf.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, index=index, **values)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, buf)

    def finish(self, ds: xr.Dataset) -> None:
        tmp = self.path / (RESULTS + ".tmp")
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, self.path / RESULTS)


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def read_chunks(path: Path, size: int, shapes: dict[str, tuple], dtype) -> tuple[dict, np.ndarray]:
    """Flat arrays [size, *shape] of ``dtype`` from every chunk file (NaN where missing), done mask."""
    flat = {k: np.full((size, *shp), np.nan, dtype) for k, shp in shapes.items()}
    done = np.zeros(size, bool)
    for f in sorted((Path(path) / "chunks").glob("*.npz")):
        with np.load(f) as z:
            idx = z["index"]
            for k in flat:
                flat[k][idx] = z[k]
            done[idx] = True
    return flat, done


def to_dataset(flat: dict[str, np.ndarray], variables: dict[str, bool], spec: dict, shape, extra,
               gamma, lam, d: int, kind: str = "scan") -> xr.Dataset:
    """Flat per-point arrays -> Dataset with dims (extra?, gamma, lam, seed)."""
    E, G, S = shape
    L = len(lam)
    lead = [extra[0]] if extra else []
    data_vars = {}
    for k, has_lam in variables.items():
        a = flat[k].reshape((E, G, S, L) if has_lam else (E, G, S))
        if has_lam:
            a = np.moveaxis(a, -1, 2)  # (E, G, L, S)
        if not extra:
            a = a[0]
        data_vars[k] = (lead + [GAMMA] + ([LAM] if has_lam else []) + [SEED], a)
    coords = {GAMMA: list(gamma), LAM: list(lam), SEED: np.arange(S),
              N: (GAMMA, [config.n_samples(g, d) for g in gamma])}
    if extra:
        coords[extra[0]] = list(extra[1])
    attrs = {KIND_ATTR: kind, SPEC_ATTR: json.dumps(spec), **_environment()}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def load(path: str | os.PathLike) -> xr.Dataset:
    """Reads a store: the finished results, or a partial one (NaN where not yet computed)."""
    path = Path(path)
    if (path / RESULTS).exists():
        with xr.open_dataset(path / RESULTS, engine="h5netcdf") as ds:
            return ds.load()
    if not (path / "spec.json").exists():
        raise ValueError(f"load: {str(path)!r} is not a memgen store (no {RESULTS} or spec.json)")
    spec = json.loads((path / "spec.json").read_text())
    size, shapes, assemble = layout(spec)
    flat, done = read_chunks(path, size, shapes, spec["dtype"])
    ds = assemble(flat)
    ds.attrs["complete"] = int(done.all())
    return ds


def layout(spec: dict):
    """(points, variable -> trailing shape, flat arrays -> Dataset) of a store's spec.

    The one place that knows how each engine's flat per-point results become a Dataset:
    ``memgen.scan`` and :func:`load` both use it.
    """
    data, model, grid = (config.from_dict(spec[k]) for k in ("data", "model", "grid"))
    if spec["model"]["kind"] == "ConvDenoiser":
        from .denoisers import engine as den

        size = len(grid.gamma) * len(grid.lam) * grid.seeds
        return size, den.variables(model), lambda flat: den.to_dataset(flat, spec, grid, data, model)
    from .grid import VARIABLES, axes_of, shapes

    ax = axes_of(grid)

    def assemble(flat):
        ds = to_dataset(flat, VARIABLES, spec, ax.shape, ax.extra, ax.gamma, ax.lam, data.d)
        ds.attrs["matmul_precision"] = "highest"
        return ds

    return ax.size, shapes(len(ax.lam)), assemble


def attach_theory(ds: xr.Dataset, th: xr.Dataset, path: str | os.PathLike | None = None) -> xr.Dataset:
    """Adds theory variables as ``<v>_theory`` on the scan's coordinates (rewrites the store)."""
    extra = {f"{k}_theory": v.reindex_like(ds, method=None) for k, v in th.data_vars.items()}
    out = ds.assign(extra)
    if path is not None:
        tmp = Path(path) / (RESULTS + ".tmp")
        out.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, Path(path) / RESULTS)
    return out
