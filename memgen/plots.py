"""Figures from results Datasets: simulation as points ± s.e.m. over seeds, theory as lines.

Contract: every function takes ``xarray.Dataset`` objects laid out as ``memgen.scan``
(dims ``[beta|alpha,] gamma, lam, seed``; ``attrs["memgen_kind"] = "scan"``) and
``memgen.theory`` (the same without ``seed``) write them, draws on a
``matplotlib.figure.Figure`` that it creates (or on the ``ax`` it is given), and returns
that Figure. No pyplot state and no display are used: figures render with Agg on save.
Nothing requested is skipped silently: a requested variable, lam or BBP line (``beta_c``)
that cannot be drawn raises ``ValueError``. Only defaults are filtered (a default variable the
Dataset lacks, a theory curve that is all NaN). One seed gives points without error bars;
``lam = 0`` is shown on a symlog axis. Theory found in a scan as ``<var>_theory`` is used
when no ``theory`` Dataset is passed. Symbols follow docs/theory.md: load
``gamma = n/d``, regularisation ``lam``, BBP transition ``gamma_c = 1/beta^2``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib import ticker
from matplotlib.figure import Figure

from . import schema
from .stats import binomial_sem, mean_sem
from .theory import mp, spiked

GAMMA_LABEL = r"load $\gamma = n/d$"
LABELS = {name: var.label for name, var in schema.VARS.items()}  # declared once, in memgen.schema
STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5,
    "legend.frameon": False, "legend.handlelength": 1.5, "errorbar.capsize": 1.5,
}
_styled = matplotlib.rc_context(STYLE)  # a ContextDecorator: the style applies per call only


def _label(var: str) -> str:
    return LABELS.get(var, var)


def _new_axes(ax, figsize=(3.4, 2.6)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def palette(n: int, cmap: str = "viridis") -> list:
    return [matplotlib.colormaps[cmap](x) for x in np.linspace(0.0, 0.85, max(n, 1))][:n]


def _fmt(x: float) -> str:
    return f"{float(x):g}"


def log_ticks(axis) -> None:
    """Plain-number labels on a log axis; 1-2-5 major ticks when it spans under 2 decades."""
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and np.log10(hi / lo) < 2.0:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


# ----------------------------------------------------------------------- statistics


def _spec(ds: xr.Dataset) -> dict:
    raw = ds.attrs.get("memgen_spec")
    try:
        spec = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except (TypeError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _spiked(ds: xr.Dataset) -> bool | None:
    """True/False when the stored spec says whether the data is Spiked, None if unknown."""
    data = _spec(ds).get("data")
    return data.get("kind") == "Spiked" if isinstance(data, dict) and "kind" in data else None


def _betas(ds: xr.Dataset, beta_c=None, fn: str = "") -> list[float]:
    """Spike strengths whose BBP line gamma_c = 1/beta^2 applies (not for PowerLaw data)."""
    if beta_c is not None:
        return _explicit_betas(beta_c, fn)
    if _spiked(ds) is False:
        return []
    if "beta" in ds.coords:
        vals = np.atleast_1d(ds["beta"].values.astype(float))
    else:
        spec = _spec(ds)
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        grid = spec.get("grid") if isinstance(spec.get("grid"), dict) else {}
        raw = grid.get("beta") if grid.get("beta") is not None else data.get("beta")
        if raw is None:
            return []
        try:
            vals = np.atleast_1d(np.asarray(raw, dtype=float))
        except (TypeError, ValueError):
            return []
    return sorted({float(b) for b in vals.ravel() if np.isfinite(b) and b > 0})


def _check_lams(ds: xr.Dataset, lams, fn: str) -> None:
    """Raises unless every requested lam is (close to) a lam of ``ds``."""
    have = np.atleast_1d(ds["lam"].values).astype(float) if "lam" in ds.coords else np.array([])
    missing = [_fmt(v) for v in np.atleast_1d(lams)
               if not np.isclose(have, float(v), rtol=1e-6, atol=1e-12).any()]
    if missing:
        raise ValueError(f"plots.{fn}: lam={', '.join(missing)} not in ds; "
                         f"available lam: {[_fmt(v) for v in have]}")


def _explicit_betas(beta_c, fn: str) -> list[float]:
    """The requested spike strengths, each of which must give a BBP line."""
    vals = np.atleast_1d(np.asarray(beta_c, dtype=float)).ravel()
    if not vals.size or not np.all(np.isfinite(vals) & (vals > 0)):
        raise ValueError(f"plots.{fn}: beta_c must be numbers > 0 (a BBP line 1/beta^2 each), got {beta_c!r}")
    return sorted({float(b) for b in vals})


def _theory(ds: xr.Dataset, theory: xr.Dataset | None) -> xr.Dataset | None:
    if theory is not None:
        return theory
    found = {v[: -len("_theory")]: ds[v] for v in ds.data_vars if str(v).endswith("_theory")}
    return xr.Dataset(found) if found else None


def _sel(da: xr.DataArray, **where) -> xr.DataArray | None:
    """``da.sel`` by nearest value, or None when the value is not (close to) present."""
    for dim, val in where.items():
        if dim not in da.dims:
            continue
        got = da.sel({dim: val}, method="nearest")
        if not np.isclose(float(got[dim]), float(val), rtol=1e-6, atol=1e-12):
            return None
        da = got
    return da


def _check_dims(da: xr.DataArray, allowed: set, fn: str) -> xr.DataArray:
    extra = [d for d in da.dims if d not in allowed]
    for d in list(extra):
        if da.sizes[d] == 1:
            da = da.isel({d: 0})
            extra.remove(d)
    if extra:
        raise ValueError(f"plots.{fn}: unexpected dims {extra} in {da.name!r}; select them first, "
                         f"e.g. ds.sel({extra[0]}=...)")
    return da


def _points(ax, mean: xr.DataArray, sem: xr.DataArray, colour, label=None, marker="o"):
    mean = mean.sortby("gamma")
    sem = sem.sortby("gamma")
    yerr = sem.values if np.any(sem.values > 0) else None
    return ax.errorbar(mean["gamma"].values, mean.values, yerr=yerr, fmt=marker, color=colour,
                       label=label, elinewidth=0.8, zorder=3)


def _line(ax, da: xr.DataArray | None, colour, label=None):
    """A theory curve; None (nothing drawn) when there is none or it is all NaN."""
    if da is None or not np.isfinite(da.values).any():
        return None
    da = da.sortby("gamma")
    return ax.plot(da["gamma"].values, da.values, "-", color=colour, label=label, zorder=2)[0]


def _bbp_lines(ax, betas, colours=None, label=True):
    for i, b in enumerate(betas):
        c = "0.4" if colours is None else colours[i]
        lab = r"$\gamma_c = 1/\beta^2$" if (label and i == 0) else None
        ax.axvline(1.0 / b**2, color=c, ls="--", lw=0.8, label=lab, zorder=1)


def _theory_key(ax, has_theory: bool):
    if has_theory:
        ax.plot([], [], "-", color="0.3", label="theory")


# ---------------------------------------------------------------------------- plots


@_styled
def order_parameters(ds: xr.Dataset, theory: xr.Dataset | None = None, lam=None, beta_c=None,
                     variables=None, axes=None, figsize=(6.8, 2.3)) -> Figure:
    """A row of panels, one order parameter each (default m, q, Q), against gamma.

    One colour per lam; simulation as points ± s.e.m. over seeds, theory as lines (a theory
    curve that is all NaN, i.e. no theory for it, is left out). The Q panel gets a dashed
    line at gamma_c = 1/beta^2 when beta is known. Where ``m_heldout`` is stored (denoisers,
    which have no theory), the m panel gets it as dotted lines: the m a model that samples the
    true distribution scores, the perfect-model baseline.

    Args:
        ds: scan Dataset with dims ``gamma, lam, seed`` (a size-1 leading ``beta``/``alpha``
            is squeezed; select larger ones first, e.g. ``ds.sel(beta=2.0)``).
        theory: theory Dataset (dims ``gamma, lam``); default: ``<var>_theory`` in ``ds``.
        lam: lam values to show (default all); each must be a lam of ``ds``.
        beta_c: spike strength(s) beta > 0 for the BBP line, drawn on the Q panel (which must
            then be drawn); default from the ``beta`` coordinate or ``attrs["memgen_spec"]``
            (Spiked data).
        variables: variables to draw, each must be in ``ds`` (default: those of m, q, Q that
            ``ds`` has).
        axes: sequence of Axes, one per drawn variable (default: a new Figure).
        figsize: size of a new Figure, inches.

    Returns:
        The Figure.

    Raises:
        ValueError: a requested variable, lam or BBP line that cannot be drawn.
    """
    fn = "order_parameters"
    theory = _theory(ds, theory)
    if variables is None:
        variables = [v for v in ("m", "q", "Q") if v in ds.data_vars]
        if not variables:
            raise ValueError(f"plots.{fn}: none of m, q, Q in ds ({list(ds.data_vars)})")
    else:
        variables = list(variables)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing or not variables:
            raise ValueError(f"plots.{fn}: variables {missing} not in ds ({list(ds.data_vars)})")
    if lam is not None:
        _check_lams(ds, lam, fn)
    betas = _betas(ds, beta_c, fn)
    if beta_c is not None and "Q" not in variables:
        raise ValueError(f"plots.{fn}: beta_c={beta_c!r} asks for a BBP line, which is drawn on the Q "
                         f"panel, but variables={variables} has no Q")
    if axes is None:
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(1, len(variables), squeeze=False)[0]
    fig = axes[0].figure
    mean, sem = mean_sem(ds)
    lams = np.atleast_1d(ds["lam"].values if lam is None else np.asarray(lam, dtype=float))
    colours = palette(len(lams))
    drawn = []  # theory curves drawn
    for ax, var in zip(axes, variables):
        mu = _check_dims(mean[var], {"gamma", "lam"}, fn)
        se = _check_dims(sem[var], {"gamma", "lam"}, fn)
        th = theory[var] if theory is not None and var in theory.data_vars else None
        if "lam" in mu.dims:
            for lv, c in zip(lams, colours):
                _points(ax, _sel(mu, lam=lv), _sel(se, lam=lv), c, label=rf"$\lambda = {_fmt(lv)}$")
                drawn.append(_line(ax, None if th is None else _sel(th, lam=lv), c))
        else:
            _points(ax, mu, se, "k", label="simulation")
            drawn.append(_line(ax, th, "k"))
        if var == "Q" and betas:
            _bbp_lines(ax, betas)
        if var == "m" and "m_heldout" in mean:  # where m has no theory: what a perfect model scores
            base = mean["m_heldout"]
            for lv, c in zip(lams, colours) if "lam" in base.dims else [(None, "k")]:
                b = (_sel(base, lam=lv) if lv is not None else base).sortby("gamma")
                ax.plot(b["gamma"].values, b.values, ":", color=c, lw=1.0, zorder=2)
            ax.plot([], [], ":", color="0.3", label="perfect-model baseline")
        ax.set_xscale("log")
        log_ticks(ax.xaxis)
        ax.set_xlabel(GAMMA_LABEL)
        ax.set_ylabel(_label(var))
    _theory_key(axes[0], any(ln is not None for ln in drawn))
    shown: set = set()
    for ax in axes:  # each entry once, in the first panel that has it
        handles, labels = ax.get_legend_handles_labels()
        new = [(h, lab) for h, lab in zip(handles, labels) if lab not in shown]
        if new:
            ax.legend(*zip(*new), loc="best")
            shown.update(lab for _, lab in new)
    return fig


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


@_styled
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
    theory = _theory(ds, theory)
    fig, ax = _new_axes(ax, figsize=(3.4, 2.6))
    mean = _check_dims(mean_sem(ds)[0][var], {"gamma", "lam"}, "phase_diagram")
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
    cbar.set_label(_label(var))
    if rows:
        ax.set_yticks(np.arange(len(lam)), [_fmt(v) for v in lam])
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    if theory is not None and var in theory.data_vars:
        th = _check_dims(theory[var], {"gamma", "lam"}, "phase_diagram")
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
    betas = _betas(ds, beta_c, "phase_diagram")
    outside = [b for b in betas if not xe[0] <= 1.0 / b**2 <= xe[-1]]
    if beta_c is not None and outside:
        raise ValueError(f"plots.phase_diagram: the BBP line of beta_c={[_fmt(b) for b in outside]} "
                         f"(gamma_c = 1/beta^2) is outside the gamma range "
                         f"[{_fmt(g.min())}, {_fmt(g.max())}]")
    betas = [b for b in betas if b not in outside]
    _bbp_lines(ax, betas, ["r"] * len(betas))
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    log_ticks(ax.xaxis)
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(r"regularisation $\lambda$")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=True, framealpha=0.8)
    return fig


def _family(ds, theory, var, dim, symbol, lam, ax, fn, transitions=False):
    """Shared body of latent_recovery / powerlaw_curves: var against gamma, one colour per dim."""
    if var not in ds.data_vars:
        raise ValueError(f"plots.{fn}: variable {var!r} not in ds ({list(ds.data_vars)})")
    theory = _theory(ds, theory)
    fig, ax = _new_axes(ax)
    mean, sem = mean_sem(ds)
    mu, se = mean[var], sem[var]
    th = theory[var] if theory is not None and var in theory.data_vars else None
    if "lam" in mu.dims:
        lv = float(mu["lam"].values[0]) if lam is None else float(lam)
        _check_lams(ds, lv, fn)
        mu, se = _sel(mu, lam=lv), _sel(se, lam=lv)
        th = None if th is None else _sel(th, lam=lv)
        if mean.sizes["lam"] > 1:
            ax.set_title(rf"$\lambda = {_fmt(lv)}$")
    vals = np.atleast_1d(mu[dim].values) if dim in mu.dims else np.array([np.nan])
    colours = palette(len(vals), "plasma")
    transitions = transitions and _spiked(ds) is not False
    drawn = []  # theory curves drawn
    for v, c in zip(vals, colours):
        m_v = mu.sel({dim: v}) if dim in mu.dims else mu
        s_v = se.sel({dim: v}) if dim in se.dims else se
        m_v = _check_dims(m_v, {"gamma"}, fn)
        label = rf"${symbol} = {_fmt(v)}$" if np.isfinite(v) else None
        _points(ax, m_v, _check_dims(s_v, {"gamma"}, fn), c, label=label)
        t_v = None if th is None else (_sel(th, **{dim: v}) if dim in th.dims else th)
        drawn.append(_line(ax, None if t_v is None else _check_dims(t_v, {"gamma"}, fn), c))
        if transitions and np.isfinite(v):
            _bbp_lines(ax, [float(v)], [c], label=False)
    if transitions and not np.isfinite(vals).any():
        _bbp_lines(ax, _betas(ds), label=False)
    if any(ln.get_linestyle() == "--" for ln in ax.get_lines()):
        ax.plot([], [], "--", color="0.4", lw=0.8, label=r"$\gamma_c = 1/\beta^2$")
    _theory_key(ax, any(ln is not None for ln in drawn))
    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(_label(var))
    ax.legend(loc="best")
    return fig


@_styled
def latent_recovery(ds: xr.Dataset, theory: xr.Dataset | None = None, lam=None, ax=None) -> Figure:
    """Latent recovery Q against gamma, one colour per beta, BBP lines at 1/beta^2.

    Args:
        ds: scan Dataset with ``Q`` over ``[beta,] gamma[, lam], seed``.
        theory: theory Dataset with ``Q`` over ``[beta,] gamma``; default ``Q_theory`` in ds.
        lam: lam to show when Q depends on it (denoisers; default the first lam).
        ax: Axes to draw on (default: a new Figure).

    Returns:
        The Figure.
    """
    return _family(ds, theory, "Q", "beta", r"\beta", lam, ax, "latent_recovery", transitions=True)


@_styled
def powerlaw_curves(ds: xr.Dataset, theory: xr.Dataset | None = None, var: str = "q", lam=None,
                    ax=None) -> Figure:
    """``var`` against gamma for power-law data, one colour per exponent alpha.

    Args:
        ds: scan Dataset with ``var`` over ``alpha, gamma[, lam], seed``.
        theory: theory Dataset over ``alpha, gamma[, lam]``; default ``<var>_theory`` in ds.
        var: variable to draw.
        lam: lam to show (default the first lam of ``ds``).
        ax: Axes to draw on (default: a new Figure).

    Returns:
        The Figure.
    """
    return _family(ds, theory, var, "alpha", r"\alpha", lam, ax, "powerlaw_curves")


@_styled
def model_curves(runs, var: str = "q", lam=None, ax=None, logy: bool = False) -> Figure:
    """``var`` against gamma for several models on the same data, one colour per model.

    Args:
        runs: list of ``(label, ds, theory)``: a scan Dataset over ``gamma[, lam], seed`` and
            its theory over ``gamma[, lam]`` (or None; ``<var>_theory`` in ds is used then).
        var: variable to draw; +inf values (a KL of a singular law) are left out.
        lam: lam to show (default the first of each ``ds``).
        ax: Axes to draw on (default: a new Figure).
        logy: logarithmic y axis (KL).

    Returns:
        The Figure.
    """
    fig, ax = _new_axes(ax)
    colours = palette(len(runs), "plasma")
    drawn = []
    for (label, ds, th), c in zip(runs, colours):
        if var not in ds.data_vars:
            raise ValueError(f"plots.model_curves: variable {var!r} not in the run {label!r}")
        th = _theory(ds, th)
        finite = ds.where(np.isfinite(ds[var]))
        mean, sem = mean_sem(finite)
        mu, se = mean[var], sem[var]
        t = th[var] if th is not None and var in th.data_vars else None
        if "lam" in mu.dims:
            lv = float(mu["lam"].values[0]) if lam is None else float(lam)
            mu, se = _sel(mu, lam=lv), _sel(se, lam=lv)
            t = None if t is None else _sel(t, lam=lv)
        _points(ax, _check_dims(mu, {"gamma"}, "model_curves"), _check_dims(se, {"gamma"}, "model_curves"), c,
                label=label)
        drawn.append(_line(ax, None if t is None else t.where(np.isfinite(t)), c))
    _theory_key(ax, any(ln is not None for ln in drawn))
    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(_label(var))
    ax.legend(loc="best")
    return fig


@_styled
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
    fig, ax = _new_axes(ax)
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
    ax.plot(s, density, "k-", label=rf"Marchenko–Pastur $\gamma = {_fmt(gamma)}$")
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


@_styled
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


@_styled
def bench_scaling(records: dict, ax=None) -> Figure:
    """Time per grid point against d on log-log axes; fitted slopes in the legend.

    Args:
        records: ``{method: (d [k], seconds [k])}``.
        ax: Axes to draw on (default: a new Figure).

    Returns:
        The Figure.
    """
    fig, ax = _new_axes(ax)
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


@_styled
def halder(ds: xr.Dataset, theory: xr.Dataset | None = None) -> Figure:
    """Halder's one-step model against the training-set size n: P(Delta > 0) with its binomial
    error, and the squared Hellinger distance H^2 to the truth (theory: its n -> inf limit).

    Args:
        ds: a OneStep scan (``p_delta``, ``h2`` over gamma, seed).
        theory: its theory (default ``<v>_theory`` in ds).

    Returns:
        The Figure (1 x 2 panels).
    """
    theory = _theory(ds, theory)
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
    ax_p.set_ylabel(_label("p_delta"))
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
    ax_h.set_ylabel(_label("h2"))
    for ax in (ax_p, ax_h):
        ax.set_xscale("log")
        ax.set_xlabel("training-set size $n$")
        if d:
            ax.axvline(d, color="0.4", ls="--", lw=0.8, label=f"$n = d = {d}$")
        ax.legend(loc="best")
    return fig


def study(ds: xr.Dataset) -> Figure:
    """The study at a glance: m, q, Q against gamma (one colour per lam, theory as lines where
    the scan holds it) and the q phase diagram, under a title that says what was scanned.

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
    variables = [v for v in ("m", "q", "Q") if v in one.data_vars]
    order_parameters(one, variables=variables, axes=axes[: len(variables)])
    phase_diagram(one, "q", ax=axes[3])
    theory = " lines: asymptotic theory;" if any(v.endswith("_theory") for v in one.data_vars) else ""
    fig.suptitle(f"{describe(ds)}: points = mean over seeds ± s.e.m.;{theory} bottom right: mean q over "
                 "(gamma, lam)", fontsize=7)
    return fig


def describe(ds: xr.Dataset) -> str:
    """What a scan is, for a title: model, data and its parameters, seeds (a swept beta or
    alpha: its first value, as ``study`` draws it)."""
    spec = json.loads(ds.attrs.get("memgen_spec", "{}"))
    data = spec.get("data", {})
    what = {k: data[k] for k in ("d", "size", "beta", "alpha") if k in data and data[k] not in ((), [], None)}
    extra = next((d for d in ("beta", "alpha") if d in ds.coords), None)  # swept (a dim) or selected (scalar)
    if extra:
        what[extra] = float(np.ravel(ds[extra].values)[0])
    text = ", ".join(f"{k} = {v[0] if isinstance(v, list) and len(v) == 1 else v}" for k, v in what.items())
    return (f"{_model_words(spec.get('model', {}))}{data.get('kind', 'scan')} ({text}), "
            f"{ds.sizes.get('seed', 1)} seeds")


def _model_words(model: dict) -> str:
    """A model spec dict in a few words for a title, e.g. ``"LinearDiffusion (ddim, 10 VE steps) on "``."""
    kind = model.get("kind")
    if kind == "LinearDiffusion":
        if model["sampler"] == "ode":
            what = f"exact ODE, sigma {model['sigma_max']:g} -> {model['sigma_min']:g}"
        else:
            what = f"{model['sampler']}, {model['steps']} {model['schedule'].upper()} steps"
        if model.get("flow_time") is not None:
            what += f", flow time {model['flow_time']:g} ({model['parameterisation']})"
        return f"LinearDiffusion ({what}) on "
    if kind == "OneStep":
        return f"OneStep (T = {model['horizon']:g}) on "
    return f"{kind} on " if kind else ""


def save(fig: Figure, path, dpi: int = 300) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` (parent folders created).

    Args:
        fig: the Figure.
        path: output path without extension (a ``.png``/``.pdf`` suffix is dropped).
        dpi: PNG resolution.

    Returns:
        The two paths written.
    """
    path = Path(path)
    if path.suffix.lower() in (".png", ".pdf"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        p = path.with_name(path.name + "." + ext)
        fig.savefig(p, dpi=dpi, format=ext)
        out.append(p)
    return out


__all__ = ["mean_sem", "order_parameters", "phase_diagram", "latent_recovery", "powerlaw_curves",
           "spectrum", "sample_grid", "bench_scaling", "study", "save", "LABELS"]
