"""Panels that are not curves against gamma: spectra, image grids, benchmark scaling, Halder's model."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..stats import binomial_sem, mean_sem
from ..theory import mp, spiked
from .common import fmt, label_of, log_ticks, new_axes, styled, theory_of


@styled
def spectrum(evals, gamma: float, beta=None, ax=None, bins: int = 50) -> Figure:
    """Histogram of the eigenvalues of C against the Marchenko–Pastur law at ratio 1/gamma.

    The histogram is normalised by the number of all eigenvalues, so it matches the
    continuous MP part; eigenvalues at the atom (below 1e-9 of the largest) are left out.
    The BBP outlier (1 + beta)(1 + 1/(gamma beta)) is marked when gamma beta^2 > 1.

    Args:
        evals: eigenvalues of C [d].
        gamma: load n/d of the fit.
        beta: spike strength(s), optional.
        ax: Axes to draw on (default: a new Figure).
        bins: number of histogram bins.

    Returns:
        The Figure.
    """
    fig, ax = new_axes(ax)
    ev = np.asarray(evals, dtype=float).ravel()
    ev = ev[np.isfinite(ev)]
    keep = ev[ev > 1e-9 * max(float(np.abs(ev).max(initial=0.0)), 1e-300)]
    b = float(mp.mp_edges(np.float64(gamma))[1])
    if keep.size:
        counts, edges = np.histogram(keep, bins=bins)
        ax.stairs(counts / (ev.size * np.diff(edges)), edges, fill=True, color="C0", alpha=0.5,
                  label=f"empirical ($d = {ev.size}$)")
    hi = max(b, float(keep.max(initial=0.0))) * 1.05
    s = np.linspace(1e-6, hi, 800)
    density = np.asarray(mp.mp_density(s, np.full_like(s, gamma)))  # the theory's own law
    ax.plot(s, density, "k-", label=rf"Marchenko–Pastur $\gamma = {fmt(gamma)}$")
    for k, bt in enumerate(np.atleast_1d(beta) if beta is not None else []):
        if gamma > float(spiked.bbp_threshold(np.float64(bt))):  # an outlier exists
            loc = float(spiked.outlier_eigenvalue(np.float64(gamma), np.float64(bt)))
            ax.axvline(loc, color="C3", ls="--", lw=1.0,
                       label=r"BBP outlier $(1+\beta)(1+\frac{1}{\gamma\beta})$" if k == 0 else None)
    ax.set_xlabel(r"eigenvalue $s$ of $C$")
    ax.set_ylabel(r"density $\mu_\gamma(s)$")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best")
    return fig


@styled
def sample_grid(train, sample_a, sample_b, titles=("training", "model A", "model B"),
                cmap: str = "gray", size: float = 0.7) -> Figure:
    """Image grid: training images (row 1), model A (row 2) and B (row 3) from the same noise.

    Args:
        train: training images [k, H, W].
        sample_a: samples of model A [j, H, W] (or one image [H, W]).
        sample_b: samples of model B [j, H, W], same noise as ``sample_a``.
        titles: row labels.
        cmap: colour map; all images share one intensity range.
        size: inches per image.

    Returns:
        The Figure.
    """
    rows = [np.asarray(x, dtype=float) for x in (train, sample_a, sample_b)]
    rows = [x[None] if x.ndim == 2 else x for x in rows]
    if any(x.ndim != 3 for x in rows) or len({x.shape[1:] for x in rows}) != 1:
        raise ValueError("plots.sample_grid: expected images [k, H, W] of one size, got "
                         f"{[x.shape for x in rows]}")
    ncol = max(x.shape[0] for x in rows)
    allv = np.concatenate([x.ravel() for x in rows])
    lo, hi = np.nanpercentile(allv, [0.5, 99.5]) if allv.size else (0.0, 1.0)
    fig = Figure(figsize=(size * ncol + 0.4, size * 3 + 0.1), layout="constrained")
    axes = fig.subplots(3, ncol, squeeze=False)
    for r, (imgs, title) in enumerate(zip(rows, titles)):
        for col in range(ncol):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < imgs.shape[0]:
                ax.imshow(imgs[col], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(title)
    return fig


@styled
def bench_scaling(records: dict, ax=None) -> Figure:
    """Time per grid point against d on log-log axes; fitted slopes in the legend.

    Args:
        records: ``{method: (d [k], seconds [k])}``.
        ax: Axes to draw on (default: a new Figure).

    Returns:
        The Figure.
    """
    fig, ax = new_axes(ax)
    for i, (method, (d, sec)) in enumerate(records.items()):
        d, sec = np.asarray(d, dtype=float), np.asarray(sec, dtype=float)
        ok = (d > 0) & (sec > 0) & np.isfinite(d) & np.isfinite(sec)
        d, sec = d[ok], sec[ok]
        order = np.argsort(d)
        label = str(method)
        if np.unique(d).size >= 2:
            slope = np.polyfit(np.log(d), np.log(sec), 1)[0]
            label += f" (slope {slope:.2f})"
        ax.plot(d[order], sec[order], "o-", color=f"C{i % 10}", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_ticks(ax.xaxis)
    ax.set_xlabel(r"dimension $d$")
    ax.set_ylabel("time per grid point (s)")
    ax.legend(loc="best")
    return fig


@styled
def halder(ds: xr.Dataset, theory: xr.Dataset | None = None) -> Figure:
    """Halder's one-step model against the training-set size n: P(Delta > 0) with its binomial
    error, and the squared Hellinger distance H^2 to the truth (theory: its n -> inf limit).

    Args:
        ds: a OneStep scan (``p_delta``, ``h2`` over gamma, seed).
        theory: its theory (default ``<v>_theory`` in ds).

    Returns:
        The Figure (1 x 2 panels).
    """
    theory = theory_of(ds, theory)
    fig = Figure(figsize=(6.8, 2.6), layout="constrained")
    ax_p, ax_h = fig.subplots(1, 2)
    ds = ds.sortby("gamma")
    n = ds["n"].values
    trials = 2 * ds.sizes["seed"]
    p = ds["p_delta"].mean("seed").values
    err = binomial_sem(p, trials)
    ax_p.errorbar(n, p, yerr=err, fmt="o", color="C0", elinewidth=0.8, label=f"{trials} models")
    ax_p.axhline(0.5, color="0.6", ls=":", lw=0.8)
    ax_p.set_ylim(-0.05, 1.05)
    ax_p.set_ylabel(label_of("p_delta"))
    mean, sem = mean_sem(ds)
    ax_h.errorbar(n, mean["h2"].values, yerr=sem["h2"].values, fmt="o", color="C1", elinewidth=0.8,
                  label="simulation")
    d = json.loads(ds.attrs.get("memgen_spec", "{}")).get("data", {}).get("d")
    if theory is not None and "h2" in theory and d:
        th = theory.sortby("gamma")
        n_th, h_th = th["n"].values, th["h2"].values
        sing = n_th - 1 < d
        if sing.any():
            ax_h.plot(n_th[sing], h_th[sing], "-", color="0.3", label=r"theory: singular law ($n \leq d$)")
        if (~sing).any():
            ax_h.axhline(float(h_th[~sing][0]), color="0.3", ls="-.", lw=0.9, label=r"theory: $n \to \infty$ limit")
    ax_h.set_ylabel(label_of("h2"))
    for ax in (ax_p, ax_h):
        ax.set_xscale("log")
        ax.set_xlabel("training-set size $n$")
        if d:
            ax.axvline(d, color="0.4", ls="--", lw=0.8, label=f"$n = d = {d}$")
        ax.legend(loc="best")
    return fig

