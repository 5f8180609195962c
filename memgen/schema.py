"""Every result variable declared once, and the one builder of labelled Datasets.

The store (through each engine's ``variables``), the theory and the plots read these
declarations: a variable means the same thing, with the same label, in every Dataset memgen
writes. Dimensions come in one canonical order, ``CANONICAL``.
"""

from __future__ import annotations

import json
import platform
from typing import NamedTuple

import numpy as np
import xarray as xr

from .version import __version__

# The canonical dimension order of every Dataset memgen writes.
CANONICAL = ("beta", "alpha", "gamma", "lam", "seed", "sigma")
SPEC_ATTR = "memgen_spec"
KIND_ATTR = "memgen_kind"


class Var(NamedTuple):
    """A result variable: what it is (description), how plots label it, its units.

    ``infinite``: +inf is a legitimate value (a divergence to a singular law), not a
    numerical failure; NaN never is.
    """

    description: str
    label: str
    units: str = "1"
    infinite: bool = False


VARS: dict[str, Var] = {
    "m": Var("memorisation: E_z max over the model's training set of |cos(x, x_mu)| (mean of the pair)",
             r"memorisation $m$"),
    "q": Var("convergence: E_z cos(x_A, x_B) of two models trained on disjoint data, sampled from the same z",
             r"convergence $q$"),
    "w2": Var("bulk Wasserstein distance W2^2(N(0, Sigma_bulk), N(0, S)) / d, S the model's covariance "
              "(C + lam I for the linear generator; mean of the pair)", r"bulk distance $W_2^2/d$", "variance"),
    "kl": Var("KL(N(0, S) || N(0, Sigma)) / d from the model's law to the truth (spikes included; +inf where S is "
              "singular; mean of the pair)", r"$\mathrm{KL}(\mathrm{model}\,\|\,\mathrm{truth})/d$", "nat",
              infinite=True),
    "kl_rev": Var("KL(N(0, Sigma) || N(0, S)) / d from the truth to the model's law (+inf where S is singular; "
                  "mean of the pair)", r"$\mathrm{KL}(\mathrm{truth}\,\|\,\mathrm{model})/d$", "nat",
                  infinite=True),
    "h2": Var("squared Hellinger distance 1 - BC between N(0, S) and the truth N(0, Sigma) (1 where S is "
              "singular; mean of the pair)", r"squared Hellinger $H^2$"),
    "m_kad": Var("Kadkhodaie et al.'s memorisation: max over the training set of the mean-removed correlation",
                 r"nearest-image $m_{\mathrm{K}}$"),
    "mem_frac": Var("fraction of samples whose nearest / second-nearest training distance is < 1/3",
                    "memorised fraction"),
    "Q": Var("latent recovery (1/k)||Uhat_k^T V_k||_F^2 of the top-k eigenvectors (mean of the pair)",
             r"latent recovery $Q$"),
    "top_eig": Var("top eigenvalue of the sample covariance C (mean of the pair)", r"top eigenvalue $s_1$",
                   "variance"),
    "delta": Var("Halder's relative distance Delta = e(training set) - e(fresh set), e(D) = int (p_G - kde_D)^2 - "
                 "int p_G^2, as (P - Q)/max(P, Q) for Delta = P - Q: its sign and relative size (mean of the pair)",
                 r"relative distance $\Delta$"),
    "p_delta": Var("fraction of the pair with Delta > 0; its mean over seeds estimates P(Delta > 0), Halder's "
                   "generalisation criterion", r"$P(\Delta > 0)$"),
    "m_heldout": Var("m of held-out data images instead of samples: what a model that samples the true "
                     "distribution scores (the nearest-neighbour baseline of m; it grows with n)",
                     r"held-out baseline of $m$"),
    "q_linear": Var("q of the linear model of the same data: each half's empirical Wiener denoiser C (C + sigma^2)^-1 "
                    "(C of the n training images), sampled by the same sampler from the same noise. Two perfect "
                    "models draw the same image (q = 1 by construction), so q's reference is this one: what "
                    "the best linear denoiser of those n images reaches", r"linear-model reference of $q$"),
    "Q_heldout": Var("Q of held-out data images (as many as the samples Q uses) instead of samples: what a model "
                     "that samples the true distribution scores with that many samples (the perfect-model baseline "
                     "of Q; its floor is the sample count, not the model)", r"held-out baseline of $Q$"),
    "Q_jac": Var("latent recovery of the model itself: Q of the top-k eigenvectors of its symmetrised mean Jacobian "
                 "at held-out images plus noise of level jacobian_sigma (block Lanczos on JVPs; mean of the pair)",
                 r"Jacobian latent recovery $Q_J$"),
    "Q_jac_heldout": Var("Q_jac of the population Wiener filter by the same procedure: what a model that knew the "
                         "truth scores (1 up to the solver's convergence)", r"perfect-model baseline of $Q_J$"),
    "loss": Var("final training loss (mean of the last 10% of steps)", "training loss", "pixel variance"),
    "mse": Var("denoising MSE per pixel on held-out images", "denoising MSE", "pixel variance"),
    "mse_wiener": Var("MSE of the population Wiener filter Sigma (Sigma + sigma^2)^-1", "Wiener MSE",
                      "pixel variance"),
    "mse_empirical": Var("MSE of the memorising denoiser C (C + sigma^2)^-1, C of the training set",
                         "empirical-Wiener MSE", "pixel variance"),
}


def label(name: str) -> str:
    """The plot label of a variable (``<v>_theory`` gets its variable's label)."""
    base = name[: -len("_theory")] if name.endswith("_theory") else name
    return VARS[base].label if base in VARS else name


def annotate(ds: xr.Dataset) -> xr.Dataset:
    """Adds description, label and units attrs to every declared variable of ``ds``."""
    for name in ds.data_vars:
        base = name[: -len("_theory")] if name.endswith("_theory") else name
        if base in VARS:
            v = VARS[base]
            desc = v.description if base == name else f"asymptotic theory of {base}: {v.description}"
            ds[name].attrs.update(description=desc, label=v.label, units=v.units)
    return ds


def provenance() -> dict:
    """Versions and devices of this process, for a Dataset's attrs."""
    import jax

    dev = jax.devices()[0]
    return {"memgen_version": __version__, "jax_version": jax.__version__,
            "numpy_version": np.__version__, "device": f"{dev.platform}:{dev.device_kind}",
            "device_count": jax.device_count(), "python": platform.python_version()}


def assemble(engine, flat: dict[str, np.ndarray], spec: dict) -> xr.Dataset:
    """An engine's flat per-point results [points, *trailing] -> Dataset in canonical dim order.

    Args:
        engine: the engine (its ``axes``, ``variables``, ``coords``, ``name``).
        flat: variable -> array [points, *trailing], points in the engine's flat order.
        spec: the store's spec dict (kept as the ``memgen_spec`` attribute).
    """
    point_dims = [a for a, _ in engine.axes]
    shape = tuple(len(v) for _, v in engine.axes)
    data_vars = {}
    for name, trailing in engine.variables.items():
        dims = point_dims + list(trailing)
        a = flat[name].reshape(shape + flat[name].shape[1:])
        order = sorted(range(len(dims)), key=lambda i: CANONICAL.index(dims[i]))
        data_vars[name] = ([dims[i] for i in order], np.transpose(a, order))
    coords = {k: v for k, v in engine.coords.items() if k in point_dims or any(k in t for t in engine.variables.values())
              or isinstance(v, tuple)}
    attrs = {KIND_ATTR: "scan", SPEC_ATTR: json.dumps(spec), "memgen_engine": engine.name,
             "matmul_precision": "highest", "dtype": spec["dtype"], **provenance()}
    return annotate(xr.Dataset(data_vars, coords=coords, attrs=attrs))
