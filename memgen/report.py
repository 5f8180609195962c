"""A scan in a few lines of text, for people who read terminals (``memgen scan`` prints it)."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .stats import mean_sem


def crossing(gamma: np.ndarray, values: np.ndarray, level: float) -> str:
    """Where ``values`` (over increasing ``gamma``) first reach ``level``, log-interpolated, as text."""
    ok = np.isfinite(values)
    g, v = gamma[ok], values[ok]
    if v.size == 0:
        return "n/a"
    if v[0] >= level:
        return f"<= {g[0]:.3g}"
    above = np.flatnonzero(v >= level)
    if above.size == 0:
        return f"> {g[-1]:.3g}"
    i = above[0]
    t = (level - v[i - 1]) / (v[i] - v[i - 1])
    return f"{np.exp(np.log(g[i - 1]) + t * (np.log(g[i]) - np.log(g[i - 1]))):.3g}"


def summary(ds: xr.Dataset) -> str:
    """Per lam (and swept beta|alpha): where q reaches 1/2, where Q reaches 1/2 (against the BBP
    threshold gamma_c = 1/beta^2 for spiked data), and m at the smallest and largest load.
    Means over seeds."""
    mean = mean_sem(ds)[0].sortby("gamma")
    spec = json.loads(ds.attrs.get("memgen_spec", "{}"))
    data = spec.get("data", {})
    g = mean["gamma"].values
    extra = next((d for d in ("beta", "alpha") if d in mean.dims), None)
    lines = [f"{'lam':>8}  {'q = 1/2 at gamma':>17}  {'Q = 1/2 at gamma':>17}  "
             f"{'m at gamma = ' + format(g[0], '.3g'):>18}  {'m at gamma = ' + format(g[-1], '.3g'):>18}"]
    for e in (mean[extra].values if extra else [None]):
        sub = mean.sel({extra: e}) if extra else mean
        if extra:
            lines.append(f"{extra} = {e:g}:")
        for lam in sub["lam"].values:
            one = sub.sel(lam=lam)
            q = crossing(g, one["q"].values, 0.5) if "q" in one else "n/a"
            Q = crossing(g, one["Q"].values, 0.5) if "Q" in one else "n/a"
            m = one["m"].values if "m" in one else np.full(g.shape, np.nan)
            lines.append(f"{lam:>8.3g}  {q:>17}  {Q:>17}  {m[0]:>18.3f}  {m[-1]:>18.3f}")
    if data.get("kind") == "Spiked":
        betas = [float(e) for e in mean["beta"].values] if extra == "beta" else sorted(set(data["beta"]))
        lines.append("BBP threshold gamma_c = 1/beta^2: "
                     + ", ".join(f"{1 / b**2:.3g} (beta = {b:g})" for b in betas))
    return "\n".join(lines)


__all__ = ["summary", "crossing"]
