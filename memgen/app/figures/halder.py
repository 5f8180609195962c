"""Halder's one-step model in the gallery: P(Delta > 0) and H^2 against the training-set size."""

from __future__ import annotations

import time
from pathlib import Path

from ... import plots
from ...specs import Grid, Isotropic, OneStep
from ...store import attach_theory
from ...theory import theory
from .common import finish, geom, record, run, save_data, sizes, spec_record, styled


@styled
def fig_halder(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Halder's linear one-step denoiser on ``Isotropic(d, mean=10)`` (his setting, T = 2):
    P(Delta > 0) with its binomial error (Delta = e(train) - e(fresh), his relative distance)
    and the squared Hellinger distance to the truth, against the training-set size n; theory:
    exact for n <= d (a singular law: H^2 = 1), the n -> infinity limit beyond."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data = Isotropic(d=z["halder_d"], mean=10.0)
    model = OneStep(horizon=2.0, samples=z["samples"], fresh=z["halder_fresh"])
    grid = Grid(gamma=geom(*z["halder_gamma"]), lam=(0.0,), seeds=z["halder_seeds"])
    ds = run(data, model, grid)
    th = theory(data, grid, model)
    ds = attach_theory(ds, th)
    save_data(ds, out_dir, "halder")
    fig = plots.halder(ds, th)
    fig.suptitle(f"{plots.describe(ds)}: P(Delta > 0) over {2 * grid.seeds} models, "
                 "H^2 mean ± s.e.m.", fontsize=7)
    files = finish(fig, out_dir, "halder")
    record(log, "halder", files, spec_record(data, model, grid), mode, t0)
    return files
