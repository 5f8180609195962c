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

from .common import GAMMA_LABEL as GAMMA_LABEL, LABELS as LABELS, STYLE as STYLE, describe as describe
from .common import log_ticks as log_ticks, palette as palette, save as save
from .curves import latent_recovery as latent_recovery, model_curves as model_curves
from .curves import order_parameters as order_parameters, powerlaw_curves as powerlaw_curves
from .maps import phase_diagram as phase_diagram, study as study
from .panels import bench_scaling as bench_scaling, halder as halder, sample_grid as sample_grid
from .panels import spectrum as spectrum
from ..stats import mean_sem as mean_sem

__all__ = ["mean_sem", "order_parameters", "phase_diagram", "latent_recovery", "powerlaw_curves", "model_curves",
           "spectrum", "sample_grid", "bench_scaling", "halder", "study", "describe", "save", "LABELS", "STYLE",
           "GAMMA_LABEL", "palette", "log_ticks"]
