"""Maps over (gamma, lam): the phase diagram, and the study at a glance."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib import ticker
from matplotlib.figure import Figure

from ..stats import mean_sem
from ..theory import spiked
from .common import (GAMMA_LABEL, bbp_betas, bbp_lines, check_dims, describe, fmt, label_of, log_ticks, new_axes,
                     styled, theory_of)
from .curves import order_parameters
from .panels import halder


def _edges(axis, values: np.ndarray) -> np.ndarray:
    """Cell edges around ``values`` that are midpoints in the axis' scale coordinates."""
    tr = axis.get_transform()
    t = tr.transform(np.asarray(values, dtype=float).reshape(-1, 1)).ravel()
    if t.size == 1:
        e = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mid = 0.5 * (t[1:] + t[:-1])
        e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return tr.inverted().transform(e.reshape(-1, 1)).ravel()


@styled
def phase_diagram(ds: xr.Dataset, var: str = "q", theory: xr.Dataset | None = None, ax=None,
                  beta_c=None, cmap: str = "viridis") -> Figure:
    """Heat map of the seed-mean of ``var`` over (gamma, lam), theory as contour lines.

    gamma is on a log axis. Up to 8 lam values are rows of equal height labelled with their
    values (theory contours placed between rows by interpolation in ``log(1 + lam/lam_min)``);
    a denser lam grid is a log axis, or symlog when lam = 0 is on the grid. The colour bar
    spans the data range exactly; theory contours are drawn at levels inside it and marked
    on the colour bar.

    Args:
        ds: scan Dataset with ``var`` over ``gamma, lam[, seed]`` (a theory Dataset works too).
        var: variable to map.
        theory: theory Dataset for contour lines; default ``<var>_theory`` in ``ds``.
        ax: Axes to draw on (default: a new Figure).
        beta_c: spike strength(s) beta > 0 for the BBP line gamma_c = 1/beta^2, inside the
            gamma range (default from ds; lines outside the range are then left out).
        cmap: colour map name.

    Returns:
        The Figure.
    """
    if var not in ds.data_vars:
        raise ValueError(f"plots.phase_diagram: variable {var!r} not in ds ({list(ds.data_vars)})")
    theory = theory_of(ds, theory)
    fig, ax = new_axes(ax, figsize=(3.4, 2.6))
    mean = check_dims(mean_sem(ds)[0][var], {"gamma", "lam"}, "phase_diagram")
    if "lam" not in mean.dims:
        raise ValueError(f"plots.phase_diagram: {var!r} has no lam dimension")
    mean = mean.sortby("gamma").sortby("lam").transpose("lam", "gamma")
    g, lam, z = mean["gamma"].values, mean["lam"].values, mean.values
    ax.set_xscale("log")
    pos = lam[lam > 0]
    lin = float(pos.min()) if pos.size else 1.0
    rows = len(lam) <= 8
    if rows:  # one row per lam, all of equal height, labelled with its value
        ye = np.arange(len(lam) + 1) - 0.5
        squash = lambda v: np.log10(1 + np.asarray(v, float) / lin)  # noqa: E731  monotone, 0 -> 0
        to_y = lambda v: np.interp(squash(v), squash(lam), np.arange(len(lam)))  # noqa: E731
    else:  # a dense lam grid: a continuous log (symlog with lam = 0) axis
        ax.set_yscale("log" if lam.min() > 0 else "symlog", **({} if lam.min() > 0 else
                                                               {"linthresh": lin, "linscale": 0.5}))
        ye = _edges(ax.yaxis, lam)
        to_y = lambda v: np.asarray(v, float)  # noqa: E731
    xe = _edges(ax.xaxis, g)
    finite = z[np.isfinite(z)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mesh = ax.pcolormesh(xe, ye, z, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label(label_of(var))
    if rows:
        ax.set_yticks(np.arange(len(lam)), [fmt(v) for v in lam])
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    if theory is not None and var in theory.data_vars:
        th = check_dims(theory[var], {"gamma", "lam"}, "phase_diagram")
        if "lam" in th.dims and th.sizes["gamma"] > 1 and th.sizes["lam"] > 1:
            th = th.sortby("gamma").sortby("lam").transpose("lam", "gamma")
            th = th.sel(lam=(th["lam"] >= lam.min()) & (th["lam"] <= lam.max()))  # inside the rows drawn
            tv = th.values[np.isfinite(th.values)]
            levels = [x for x in ticker.MaxNLocator(6).tick_values(vmin, vmax)
                      if vmin < x < vmax and tv.size and tv.min() < x < tv.max()]
            if levels and th.sizes["lam"] > 1:
                cs = ax.contour(th["gamma"].values, to_y(th["lam"].values), th.values, levels=levels,
                                colors="w", linewidths=0.8)
                ax.clabel(cs, fontsize=5.5, fmt="%g")
                cbar.add_lines(cs)
    betas = bbp_betas(ds, beta_c, "phase_diagram")
    outside = [b for b in betas if not xe[0] <= float(spiked.bbp_threshold(np.float64(b))) <= xe[-1]]
    if beta_c is not None and outside:
        raise ValueError(f"plots.phase_diagram: the BBP line of beta_c={[fmt(b) for b in outside]} "
                         f"(gamma_c = 1/beta^2) is outside the gamma range "
                         f"[{fmt(g.min())}, {fmt(g.max())}]")
    betas = [b for b in betas if b not in outside]
    bbp_lines(ax, betas, ["r"] * len(betas))
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    log_ticks(ax.xaxis)
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(r"regularisation $\lambda$")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=True, framealpha=0.8)
    return fig


def study(ds: xr.Dataset) -> Figure:
    """The study at a glance: m, q, Q against gamma (one colour per lam, theory as lines where
    the scan holds it) and the q phase diagram, under a title that says what was scanned.
    A denoiser scan gets m, q, Q_jac and Q, each with its perfect-model baseline.

    Args:
        ds: a scan Dataset (a swept beta or alpha: its first value is drawn).

    Returns:
        The Figure (2 x 2 panels).
    """
    if "p_delta" in ds:  # Halder's one-step model: its own study
        fig = halder(ds)
        fig.suptitle(f"{describe(ds)}: P(Delta > 0) with binomial error; H^2 mean ± s.e.m.", fontsize=7)
        return fig
    extra = next((d for d in ("beta", "alpha") if d in ds.dims), None)
    one = ds.isel({extra: 0}) if extra else ds
    fig = Figure(figsize=(6.8, 5.0), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    if "Q_jac" in one.data_vars:  # denoisers: latent recovery read off the model beats the samples' Q
        order_parameters(one, variables=("m", "q", "Q_jac", "Q"), axes=axes)
        linear = "; dash-dot: q of the linear model of the same images" if "q_linear" in one.data_vars else ""
        fig.suptitle(f"{describe(ds)}\npoints = mean over seeds ± s.e.m.; dotted: the perfect-model baseline of "
                     f"each (fresh images, the Wiener filter){linear}", fontsize=7)
        return fig
    variables = [v for v in ("m", "q", "Q") if v in one.data_vars]
    order_parameters(one, variables=variables, axes=axes[: len(variables)])
    phase_diagram(one, "q", ax=axes[3])
    theory = " lines: asymptotic theory;" if any(v.endswith("_theory") for v in one.data_vars) else ""
    fig.suptitle(f"{describe(ds)}\npoints = mean over seeds ± s.e.m.;{theory} bottom right: mean q over "
                 "(gamma, lam)", fontsize=7)
    return fig

