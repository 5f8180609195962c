"""What every figure shares: the sizes per mode, the scans and theory they run, the index records."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ... import plots, specs
from ...engines.denoisers import ConvDenoiser
from ...scan import scan
from ...specs import Grid, Linear, Spiked
from ...theory import theory

MODES = ("quick", "full")  # SIZES may hold more (the tests add a tiny one)

#: Sizes per mode. ``gamma`` entries are (lo, hi, count) log-spaced; ``img_k``: the latent
#: directions Q scores on unspiked images.
SIZES: dict[str, dict] = {
    "quick": dict(
        diff_models=(("ode", 1), ("ddim", 5), ("ddim", 18), ("heun", 5), ("heun", 18), ("ddpm", 18)), diff_d=200,
        d=200, gamma=(0.05, 8.0, 12), lam=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0), lam_show=(0.0, 0.01, 0.1, 1.0),
        seeds=8, samples=32, beta=2.0, betas=(0.5, 1.0, 2.0, 4.0), alphas=(0.5, 1.0, 2.0), pl_k=1,
        theory_points=80, spec_d=1000, spec_gammas=(0.2, 1.0, 4.0),
        img_size=(8, 8), img_gamma=(1 / 64, 1 / 32, 1 / 8, 1 / 2, 2.0, 8.0), img_lam=(0.0,), img_seeds=2, img_k=5,
        denoiser=dict(depth=5, width=16, steps=2500, batch=16, lr=3e-3, sample_steps=25, samples=32, test=16),
        pair_n=(2, 512), pair_show=8, spike_betas=(1.0, 16.0),
        bench_d=(32, 64, 128), bench_seeds=8, naive_seeds=2,
        halder_d=100, halder_gamma=(0.1, 30.0, 8), halder_seeds=20, halder_fresh=10_000,
    ),
    "full": dict(
        diff_models=(("ode", 1), ("ddim", 5), ("ddim", 10), ("ddim", 18), ("heun", 5), ("heun", 18), ("ddpm", 18)),
        diff_d=1000,
        d=1000, gamma=(0.03, 10.0, 20), lam=(0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        lam_show=(0.0, 0.01, 0.1, 1.0), seeds=16, samples=64, beta=2.0,
        betas=(0.5, 1.0, 2.0, 4.0), alphas=(0.5, 1.0, 2.0), pl_k=1, theory_points=200,
        spec_d=2000, spec_gammas=(0.2, 1.0, 4.0),
        img_size=(8, 8), img_gamma=(1 / 64, 1 / 32, 1 / 8, 1 / 2, 2.0, 8.0), img_lam=(0.0,), img_seeds=4, img_k=5,
        denoiser=dict(depth=6, width=32, steps=3000, batch=16, lr=2e-3, sample_steps=25, samples=32, test=16),
        pair_n=(2, 512), pair_show=8, spike_betas=(1.0, 16.0),
        bench_d=(32, 64, 128, 256, 512), bench_seeds=8, naive_seeds=2,
        halder_d=100, halder_gamma=(0.1, 100.0, 12), halder_seeds=60, halder_fresh=10_000,
    ),
}


# ---------------------------------------------------------------------------- helpers


def sizes(mode: str) -> dict:
    if mode not in SIZES:
        raise ValueError(f"mode must be one of {list(SIZES)}, got {mode!r}")
    return SIZES[mode]


def geom(lo: float, hi: float, count: int) -> list[float]:
    return [float(f"{v:.4g}") for v in np.geomspace(lo, hi, count)]


def gammas_of(z: dict) -> list[float]:
    return geom(*z["gamma"])


def dense_gammas(gammas, points: int) -> list[float]:
    return geom(min(gammas), max(gammas), points)


def denoiser_spec(z: dict) -> ConvDenoiser:
    spec = z["denoiser"]
    if spec == "quick":
        return ConvDenoiser.quick()
    if spec == "default":
        return ConvDenoiser()
    return ConvDenoiser(**spec)


def spec_record(data=None, model=None, grid=None, label=None, **extra) -> dict:
    out = {"data": None if data is None else specs.to_dict(data),
           "model": None if model is None else specs.to_dict(model),
           "grid": None if grid is None else specs.to_dict(grid)}
    if label is not None:
        out["label"] = label
    out.update(extra)
    return out


def fixed_batch(seeds: int) -> dict:
    """A fixed micro-batch: the scans of one data spec share one compiled program per bucket."""
    return dict(batch=min(8, seeds))


def run(data, model, grid) -> xr.Dataset:
    return scan(data, model, grid, progress=False, **fixed_batch(grid.seeds))


def theory_on(data, grid: Grid, points: int) -> xr.Dataset:
    """Theory on the scan's gammas and ``points`` log-spaced ones between them (one call)."""
    gammas = sorted(set(grid.gamma) | set(dense_gammas(grid.gamma, points)))
    return theory(data, Grid(gamma=gammas, lam=grid.lam, beta=grid.beta, alpha=grid.alpha))


def save_data(ds: xr.Dataset, out_dir: Path, name: str) -> Path:
    path = Path(out_dir) / "data" / f"{name}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def record(log, name: str, files, specs, mode: str, t0: float, **extra) -> None:
    if log is None:
        return
    entry = {"name": name, "mode": mode, "files": [str(p) for p in files],
             "specs": specs if isinstance(specs, list) else [specs],
             "seconds": round(time.perf_counter() - t0, 2)}
    entry.update(extra)
    log.append(entry)


def spiked_scan(z: dict) -> tuple[Spiked, Linear, Grid, xr.Dataset]:
    """The (gamma, lam, seed) scan shared by figures 1 and 2 (cached per mode and sizes)."""
    data = Spiked(d=z["d"], beta=z["beta"])
    model = Linear(samples=z["samples"])
    grid = Grid(gamma=gammas_of(z), lam=z["lam"], seeds=z["seeds"])
    key = (data, model, grid)
    if CACHE.get("spiked_key") != key:
        CACHE["spiked_key"], CACHE["spiked_ds"] = key, run(data, model, grid)
    return data, model, grid, CACHE["spiked_ds"]


CACHE: dict = {}
styled = matplotlib.rc_context(plots.STYLE)  # the style of memgen.plots, per call


def finish(fig: Figure, out_dir, name: str) -> list[Path]:
    return plots.save(fig, Path(out_dir) / name)


def fmt(x) -> str:
    return f"{float(x):g}"
