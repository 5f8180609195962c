"""Order parameters against the load gamma: simulation as points ± s.e.m., theory as lines."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..stats import mean_sem
from .common import (GAMMA_LABEL, bbp_betas, bbp_lines, check_dims, check_lams, fmt, is_spiked, label_of, log_ticks,
                     new_axes, palette, sel_near, sim_points, styled, theory_key, theory_line, theory_of)


# stored references of an order parameter <var><suffix>, drawn on its panel as (line style, legend)
_REFERENCES = (("_heldout", ":", "perfect-model baseline"), ("_linear", "-.", "linear model, same data"))


@styled
def order_parameters(ds: xr.Dataset, theory: xr.Dataset | None = None, lam=None, beta_c=None,
                     variables=None, axes=None, figsize=(6.8, 2.3)) -> Figure:
    """A row of panels, one order parameter each (default m, q, Q), against gamma.

    One colour per lam; simulation as points ± s.e.m. over seeds, theory as lines (a theory
    curve that is all NaN, i.e. no theory for it, is left out). The Q panel gets a dashed
    line at gamma_c = 1/beta^2 when beta is known. Where ``<var>_heldout`` is stored (denoisers,
    which have no theory: ``m_heldout``, ``Q_heldout``, ``Q_jac_heldout``), that panel gets it as dotted lines: what a
    model that samples the true distribution scores, the perfect-model baseline. q, whose perfect-model
    value is 1 by construction, gets ``q_linear`` dash-dotted: the linear model of the same data.

    Args:
        ds: scan Dataset with dims ``gamma, lam, seed`` (a size-1 leading ``beta``/``alpha``
            is squeezed; select larger ones first, e.g. ``ds.sel(beta=2.0)``).
        theory: theory Dataset (dims ``gamma, lam``); default: ``<var>_theory`` in ``ds``.
        lam: lam values to show (default all); each must be a lam of ``ds``.
        beta_c: spike strength(s) beta > 0 for the BBP line, drawn on the Q panel (which must
            then be drawn); default from the ``beta`` coordinate or ``attrs["memgen_spec"]``
            (Spiked data).
        variables: variables to draw, each must be in ``ds`` (default: those of m, q, Q, Q_jac
            that ``ds`` has).
        axes: sequence of Axes, one per drawn variable (default: a new Figure).
        figsize: size of a new Figure, inches.

    Returns:
        The Figure.

    Raises:
        ValueError: a requested variable, lam or BBP line that cannot be drawn.
    """
    fn = "order_parameters"
    theory = theory_of(ds, theory)
    if variables is None:
        variables = [v for v in ("m", "q", "Q", "Q_jac") if v in ds.data_vars]
        if not variables:
            raise ValueError(f"plots.{fn}: none of m, q, Q, Q_jac in ds ({list(ds.data_vars)})")
    else:
        variables = list(variables)
        missing = [v for v in variables if v not in ds.data_vars]
        if missing or not variables:
            raise ValueError(f"plots.{fn}: variables {missing} not in ds ({list(ds.data_vars)})")
    if lam is not None:
        check_lams(ds, lam, fn)
    betas = bbp_betas(ds, beta_c, fn)
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
        mu = check_dims(mean[var], {"gamma", "lam"}, fn)
        se = check_dims(sem[var], {"gamma", "lam"}, fn)
        th = theory[var] if theory is not None and var in theory.data_vars else None
        if "lam" in mu.dims:
            for lv, c in zip(lams, colours):
                sim_points(ax, sel_near(mu, lam=lv), sel_near(se, lam=lv), c, label=rf"$\lambda = {fmt(lv)}$")
                drawn.append(theory_line(ax, None if th is None else sel_near(th, lam=lv), c))
        else:
            sim_points(ax, mu, se, "k", label="simulation")
            drawn.append(theory_line(ax, th, "k"))
        if var == "Q" and betas:
            bbp_lines(ax, betas)
        for suffix, style, label in _REFERENCES:  # where there is no theory: stored references
            if f"{var}{suffix}" not in mean:
                continue
            base = mean[f"{var}{suffix}"]
            for lv, c in zip(lams, colours) if "lam" in base.dims else [(None, "k")]:
                b = (sel_near(base, lam=lv) if lv is not None else base).sortby("gamma")
                ax.plot(b["gamma"].values, b.values, style, color=c, lw=1.0, zorder=2)
            ax.plot([], [], style, color="0.3", label=label)
        ax.set_xscale("log")
        log_ticks(ax.xaxis)
        ax.set_xlabel(GAMMA_LABEL)
        ax.set_ylabel(label_of(var))
    theory_key(axes[0], any(ln is not None for ln in drawn))
    shown: set = set()
    for ax in axes:  # each entry once, in the first panel that has it
        handles, labels = ax.get_legend_handles_labels()
        new = [(h, lab) for h, lab in zip(handles, labels) if lab not in shown]
        if new:
            ax.legend(*zip(*new), loc="best", handlelength=2.5)  # long enough to show a dash-dot
            shown.update(lab for _, lab in new)
    return fig



def _family(ds, theory, var, dim, symbol, lam, ax, fn, transitions=False):
    """Shared body of latent_recovery / powerlaw_curves: var against gamma, one colour per dim."""
    if var not in ds.data_vars:
        raise ValueError(f"plots.{fn}: variable {var!r} not in ds ({list(ds.data_vars)})")
    theory = theory_of(ds, theory)
    fig, ax = new_axes(ax)
    mean, sem = mean_sem(ds)
    mu, se = mean[var], sem[var]
    th = theory[var] if theory is not None and var in theory.data_vars else None
    if "lam" in mu.dims:
        lv = float(mu["lam"].values[0]) if lam is None else float(lam)
        check_lams(ds, lv, fn)
        mu, se = sel_near(mu, lam=lv), sel_near(se, lam=lv)
        th = None if th is None else sel_near(th, lam=lv)
        if mean.sizes["lam"] > 1:
            ax.set_title(rf"$\lambda = {fmt(lv)}$")
    vals = np.atleast_1d(mu[dim].values) if dim in mu.dims else np.array([np.nan])
    colours = palette(len(vals), "plasma")
    transitions = transitions and is_spiked(ds) is not False
    drawn = []  # theory curves drawn
    for v, c in zip(vals, colours):
        m_v = mu.sel({dim: v}) if dim in mu.dims else mu
        s_v = se.sel({dim: v}) if dim in se.dims else se
        m_v = check_dims(m_v, {"gamma"}, fn)
        label = rf"${symbol} = {fmt(v)}$" if np.isfinite(v) else None
        sim_points(ax, m_v, check_dims(s_v, {"gamma"}, fn), c, label=label)
        t_v = None if th is None else (sel_near(th, **{dim: v}) if dim in th.dims else th)
        drawn.append(theory_line(ax, None if t_v is None else check_dims(t_v, {"gamma"}, fn), c))
        if transitions and np.isfinite(v):
            bbp_lines(ax, [float(v)], [c], label=False)
    if transitions and not np.isfinite(vals).any():
        bbp_lines(ax, bbp_betas(ds), label=False)
    if any(ln.get_linestyle() == "--" for ln in ax.get_lines()):
        ax.plot([], [], "--", color="0.4", lw=0.8, label=r"$\gamma_c = 1/\beta^2$")
    theory_key(ax, any(ln is not None for ln in drawn))
    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(label_of(var))
    ax.legend(loc="best")
    return fig


@styled
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


@styled
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


@styled
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
    fig, ax = new_axes(ax)
    colours = palette(len(runs), "plasma")
    drawn = []
    for (label, ds, th), c in zip(runs, colours):
        if var not in ds.data_vars:
            raise ValueError(f"plots.model_curves: variable {var!r} not in the run {label!r}")
        th = theory_of(ds, th)
        finite = ds.where(np.isfinite(ds[var]))
        mean, sem = mean_sem(finite)
        mu, se = mean[var], sem[var]
        t = th[var] if th is not None and var in th.data_vars else None
        if "lam" in mu.dims:
            lv = float(mu["lam"].values[0]) if lam is None else float(lam)
            mu, se = sel_near(mu, lam=lv), sel_near(se, lam=lv)
            t = None if t is None else sel_near(t, lam=lv)
        sim_points(ax, check_dims(mu, {"gamma"}, "model_curves"), check_dims(se, {"gamma"}, "model_curves"), c,
                label=label)
        drawn.append(theory_line(ax, None if t is None else t.where(np.isfinite(t)), c))
    theory_key(ax, any(ln is not None for ln in drawn))
    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(GAMMA_LABEL)
    ax.set_ylabel(label_of(var))
    ax.legend(loc="best")
    return fig

