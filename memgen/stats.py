"""Reductions over seeds: what the plots, the figures and users average a scan with."""

from __future__ import annotations

import numpy as np
import xarray as xr


def mean_sem(ds: xr.Dataset, dim: str = "seed") -> tuple[xr.Dataset, xr.Dataset]:
    """Mean and standard error of the mean over ``dim``, ignoring NaNs.

    ``sem = std(ddof=1) / sqrt(count)`` with ``count`` the non-NaN entries; it is 0 where
    fewer than two entries exist (one seed), so no warning is ever raised. Variables
    without ``dim`` (e.g. ``q_theory``) pass through unchanged with ``sem = 0``.

    Args:
        ds: Dataset with a ``dim`` dimension (or without, then ``sem`` is all zeros).
        dim: dimension to reduce.

    Returns:
        ``(mean, sem)``: Datasets without ``dim``, attrs of ``ds`` kept on ``mean``.
    """
    means, sems = {}, {}
    for name, da in ds.data_vars.items():
        if dim not in da.dims:
            means[name], sems[name] = da, xr.zeros_like(da, dtype=float)
            continue
        da = da.astype(float)
        cnt = da.notnull().sum(dim)
        mean = da.fillna(0.0).sum(dim) / cnt.where(cnt > 0)
        ss = ((da - mean) ** 2).fillna(0.0).sum(dim)
        var = ss / (cnt - 1).where(cnt > 1)
        sems[name] = np.sqrt(var / cnt).fillna(0.0)
        means[name] = mean
    drop = [c for c in ds.coords if dim in ds[c].dims]
    coords = {k: v for k, v in ds.coords.items() if k not in drop}
    mean_ds = xr.Dataset(means, coords=coords, attrs=dict(ds.attrs))
    sem_ds = xr.Dataset(sems, coords=coords)
    return mean_ds, sem_ds


def binomial_sem(p, trials: int):
    """Standard error of a fraction ``p`` of ``trials`` Bernoulli outcomes, ``sqrt(p (1 - p) / trials)``,
    floored at ``p (1 - p) = 1/4 trials`` so that 0 and 1 do not claim zero error."""
    p = np.asarray(p, dtype=float)
    return np.sqrt(np.maximum(p * (1 - p), 0.25 / trials) / trials)


__all__ = ["mean_sem", "binomial_sem"]
