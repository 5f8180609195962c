"""A scan in a few lines of text, for people who read terminals (``memgen scan`` prints it)."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .stats import binomial_sem, mean_sem


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
    Means over seeds. A scan with Halder's relative distance gets ``halder_summary``, a denoiser
    scan ``denoiser_summary``."""
    if "p_delta" in ds:
        return halder_summary(ds)
    if "Q_jac" in ds:
        return denoiser_summary(ds)
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


def denoiser_summary(ds: xr.Dataset) -> str:
    """Per lam and load: n, m beside its held-out baseline, q beside its linear-model reference,
    and Q_jac, means ± s.e.m. over seeds.

    The three columns a memorisation -> generalisation transition moves: m from ~1 down to its
    baseline, q from ~0 up to ~1, Q_jac up towards its baseline of 1 (``Q_jac_heldout``).
    ``q_linear`` is what the linear model of the same images reaches.
    """
    mean, sem = (d.sortby("gamma") for d in mean_sem(ds))
    lines = [f"{'gamma':>8}  {'n':>6}  {'m':>13}  {'m_heldout':>9}  {'q':>13}  {'q_linear':>8}  {'Q_jac':>13}"]
    several = mean.sizes["lam"] > 1
    for lam in mean["lam"].values:
        if several:
            lines.append(f"lam = {lam:g}:")
        one, err = mean.sel(lam=lam), sem.sel(lam=lam)
        for i, g in enumerate(one["gamma"].values):
            cell = {v: f"{float(one[v][i]):.3f} ± {float(err[v][i]):.3f}" for v in ("m", "q", "Q_jac")}
            lines.append(f"{g:>8.3g}  {int(one['n'][i]):>6}  {cell['m']:>13}  {float(one['m_heldout'][i]):>9.3f}  "
                         f"{cell['q']:>13}  {float(one['q_linear'][i]):>8.3f}  {cell['Q_jac']:>13}")
    base = float(mean["Q_jac_heldout"].min())
    lines.append("memorising: m near 1 (samples copy training images), q near 0 (two models on disjoint sets "
                 "disagree); generalising: m at m_heldout (no closer to the training set than fresh images), "
                 f"q near 1 (q_linear: the linear model of the same images), Q_jac up towards {base:.2f} "
                 "(the Wiener filter's: latent directions learnt)")
    return "\n".join(lines)


def halder_summary(ds: xr.Dataset) -> str:
    """Per load: n, P(Delta > 0) with its binomial standard error, H^2 and KL/d (means over seeds)."""
    mean = ds.mean("seed").sortby("gamma")
    trials = 2 * ds.sizes["seed"]  # both models of every pair
    lines = [f"{'gamma':>8}  {'n':>6}  {'P(Delta > 0)':>16}  {'H^2':>8}  {'KL/d':>9}"]
    for g in mean["gamma"].values:
        one = mean.sel(gamma=g)
        p = float(one["p_delta"])
        err = float(binomial_sem(p, trials))
        lines.append(f"{g:>8.3g}  {int(one['n']):>6}  {p:>9.3f} ± {err:.3f}  {float(one['h2']):>8.4f}  "
                     f"{float(one['kl']):>9.4g}")
    lines.append("P(Delta > 0) -> 1: the model generalises (Halder); H^2 = 1 and KL = inf: a singular law (n <= d)")
    return "\n".join(lines)


__all__ = ["summary", "denoiser_summary", "halder_summary", "crossing"]
