"""Spectral gains: every linear generative model here samples x = G(C) z, one gain per eigen-direction.

Both model kinds of this package are linear maps of the noise z that are functions of the
training covariance ``C = U diag(l) U^T``, so a sample is ``x = U diag(G(l)) U^T z`` plus
``G(0)`` on the complement of span(U) (lineardiff.md §1). This module gives ``G`` for:

* the covariance-square-root generator: ``G(l) = sqrt(l + lam)``;
* linear diffusion: a denoiser ``D_sigma = U diag(f_sigma(l)) U^T`` (Wiener, ridge ``c`` or
  gradient-flow time ``t`` in x0- or eps-parameterisation) sampled from ``x_T = s z`` by the
  exact probability-flow ODE, DDIM (Euler) or Heun (EDM) over a VE (Karras) or VP (linear
  beta) schedule; ``G = s g`` with ``g`` the sampler's product formula;
* DDPM (ancestral) sampling: a stochastic sampler is still linear in its noises, so the
  sample is ``x = sum_j U diag(G_j(l)) U^T z_j`` over ``J`` independent noise vectors (the
  start and one fresh noise per stochastic step): a *stack* of gains ``[J, ...]``.

Every model is a gain stack (``gain``; ``J = noises(model)``, 1 for the deterministic ones),
so one code path serves all: the sample sums over the noise axis and the law is
``N(0, U diag(sum_j G_j^2) U^T + ...)``. A centred denoiser (``D(y) = mu + U f U^T (y - mu)``)
adds the mean ``(I - g(C)) mu`` with ``g = G_0 / s`` (``start_scale``), for every sampler.

``sample_loop`` runs the real sampler update step by step (``lax.scan`` with the dense
``D = U f U^T``, the same noises): the tests check that it equals the product formulas to
float precision.

Contract: pure ``jnp`` functions that broadcast over the eigenvalues ``l`` and the ridge
``c``; schedules are static numpy float64 arrays (a function of the spec alone), cast to the
eigenvalues' dtype where they meet them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ...specs import Linear, LinearDiffusion

# VP schedule of Ho et al. (DDPM): linear beta over T steps.
VP_BETA = (1e-4, 1e-2)
VP_T = 1000

# Gauss-Legendre nodes in log(sigma) for the exact ODE of gradient-flow filters (no closed form).
_ODE_NODES = 24
_ODE_PANELS = 16


# ------------------------------------------------------------------------- schedules


def karras(steps: int, sigma_max: float, sigma_min: float, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (EDM) noise levels, then 0: ``[steps + 1]`` float64, decreasing.

    ``sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho``, i = 0..N-1, then
    ``sigma_N = 0`` (the final step to 0). ``N = 1`` is the single level ``sigma_max``.
    """
    i = np.arange(steps, dtype=np.float64)
    frac = i / max(steps - 1, 1)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return np.append((a + frac * (b - a)) ** rho, 0.0)


def vp_alpha_bar(T: int = VP_T, beta=VP_BETA) -> np.ndarray:
    """Cumulative ``alpha_bar_t = prod_{k <= t+1} (1 - beta_k)`` of the linear-beta VP schedule [T].

    ``beta_k = beta(k/T)`` for k = 1..T with ``beta(u)`` linear from ``beta[0]`` at u = 0 to
    ``beta[1]`` at u = 1: array index t is diffusion step t + 1. This discretisation
    reproduces lineardiff.md's public VP check to 1e-5; DDPM code often writes
    ``linspace(beta[0], beta[1], T)`` instead (betas ~1% smaller at the start, 4.7% off the
    check at l = 1e-3).
    """
    return np.cumprod(1.0 - np.linspace(beta[0], beta[1], T + 1, dtype=np.float64)[1:])


def vp(steps: int, T: int = VP_T, beta=VP_BETA) -> tuple[np.ndarray, float]:
    """VP (DDPM linear beta) levels seen as VE noise levels, and the input scale.

    DDIM (eta = 0) at timesteps ``round(linspace(T-1, 0, steps))`` then to alpha_bar = 1 is
    Euler on the VE probability flow of ``x / sqrt(alpha_bar)`` at
    ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` (Song et al. 2021); a VP start ``x_T = z``
    is ``z / sqrt(alpha_bar_T)`` in VE units.

    Returns:
        (levels ``[steps + 1]`` float64 ending in 0, scale ``s = 1 / sqrt(alpha_bar_{T-1})``).
    """
    ab = vp_alpha_bar(T, beta)
    t = np.round(np.linspace(T - 1, 0, steps)).astype(int)
    return np.append(np.sqrt((1 - ab[t]) / ab[t]), 0.0), float(1 / np.sqrt(ab[T - 1]))


def levels(model) -> tuple[np.ndarray, float]:
    """(noise levels ``[N + 1]`` ending in 0, input scale s) of a ``LinearDiffusion`` spec."""
    if model.schedule == "vp":
        return vp(model.steps)
    smax = model.sigma_max
    return karras(model.steps, smax, model.sigma_min, model.rho), smax


def start_scale(model) -> float:
    """The input scale s of a ``LinearDiffusion`` (``x_T = s z``): ``sigma_max`` (VE, ``inf``
    allowed for the ODE) or ``1 / sqrt(alpha_bar_T)`` (VP)."""
    return vp(model.steps)[1] if model.schedule == "vp" else model.sigma_max


def noises(model) -> int:
    """J, the independent noise vectors one sample of ``model`` draws (static).

    1 for ``Linear`` and the deterministic samplers; ``steps`` for ddpm: the start z_0 and
    one fresh noise per step into a positive level (the final step, to 0, adds none).
    """
    return model.steps if isinstance(model, LinearDiffusion) and model.sampler == "ddpm" else 1


# --------------------------------------------------------------------------- filters


def denoiser_filter(l, c, sigma, flow_time=None, parameterisation: str = "x0"):
    """Spectral filter ``f_sigma(l)`` of the trained linear denoiser ``D_sigma = U f U^T``.

    Args:
        l: eigenvalues of C (>= 0), any shape.
        c: ridge >= 0 (0: Wiener), broadcasting with ``l``.
        sigma: noise level(s) >= 0, broadcasting.
        flow_time: ``None`` (trained to convergence) or the gradient-flow time t > 0 from
            zero weights (Merger & Goldt; ridge must then be 0).
        parameterisation: ``"x0"`` or ``"eps"`` (only matters with ``flow_time``): x0 collapses
            unlearned directions, eps inflates them.

    Returns:
        f, broadcast shape: ``l / (l + c + sigma^2)``, or its gradient-flow transient.
    """
    s2 = sigma**2
    if flow_time is None:
        return l / (l + c + s2)
    decay = jnp.exp(-2 * flow_time * (l + s2))
    if parameterisation == "x0":
        return l / (l + s2) * (1 - decay)
    return (l + s2 * decay) / (l + s2)


# ------------------------------------------------------------------------------ gains


def sqrt_gain(l, lam):
    """Gain of the covariance-square-root generator ``(C + lam I)^(1/2)``: ``sqrt(l + lam)``."""
    return jnp.sqrt(l + lam)


def _ode_log_gain(l, c, model):
    """``log G`` of the exact probability-flow ODE from ``s z`` at sigma_max to sigma_min.

    ``log g = -int (1 - f) dsigma/sigma`` and ``log s = log smax``, so
    ``log G = log smin + int_{log smin}^{log smax} f d(log sigma)``, finite as smax -> inf.
    Ridge/Wiener in closed form, ``B = l / (l + c)``:
    ``log G = log smin + B/2 [log1p((l+c)/smin^2) - log1p((l+c)/smax^2)]``; gradient flow by
    Gauss-Legendre quadrature in ``log sigma``.
    """
    smin, smax = model.sigma_min, model.sigma_max
    if model.flow_time is None:
        lc = l + c
        B = jnp.where(lc > 0, l / jnp.where(lc > 0, lc, 1), 0)
        upper = jnp.log1p(lc / smax**2) if math.isfinite(smax) else 0.0
        return math.log(smin) + 0.5 * B * (jnp.log1p(lc / smin**2) - upper)
    x, w = np.polynomial.legendre.leggauss(_ODE_NODES)
    edges = np.linspace(math.log(smin), math.log(smax), _ODE_PANELS + 1)
    half = np.diff(edges)[:, None] / 2
    u = (edges[:-1, None] + half * (x[None] + 1)).ravel()  # log sigma nodes
    wt = (half * w[None]).ravel()
    f = denoiser_filter(l[..., None], c, jnp.exp(jnp.asarray(u, l.dtype)), model.flow_time, model.parameterisation)
    return math.log(smin) + jnp.sum(f * jnp.asarray(wt, l.dtype), axis=-1)


def diffusion_gain(l, c, model):
    """Total gain ``G(l) = s g(l)`` of linear diffusion: the sample is ``U diag(G) U^T z``.

    Args:
        l: eigenvalues of C (>= 0), shape ``[...]``.
        c: ridge (``--lam``; 0 = Wiener), broadcasting with ``l``.
        model: a ``LinearDiffusion`` spec (sampler, schedule, steps, filter; static).

    Returns:
        G, broadcast shape, dtype of ``l``. Samplers (lineardiff.md §1), with
        ``f_i = f_{sigma_i}(l)`` and ``r_i = sigma_{i+1} / sigma_i``:
        ``ode``: ``exp(log G)`` of ``_ode_log_gain`` (times ``f_{smin}`` with ``denoise_final``);
        ``ddim``: ``s prod_i [f_i + r_i (1 - f_i)]``;
        ``heun``: ``s prod_i [1 + h_i/2 (a_i + b_i e_i)]``, ``h_i = sigma_{i+1} - sigma_i``,
        ``a_i = (1 - f_i)/sigma_i``, ``e_i = 1 + h_i a_i`` (the Euler predictor),
        ``b_i = (1 - f_{i+1})/sigma_{i+1}``; the last step (to 0) is Euler.
    """
    l = jnp.asarray(l)
    c = jnp.asarray(c, l.dtype)
    l, c = jnp.broadcast_arrays(l, c)
    if model.sampler == "ode":
        G = jnp.exp(_ode_log_gain(l, c, model))
        if model.denoise_final:
            G = G * denoiser_filter(l, c, model.sigma_min, model.flow_time, model.parameterisation)
        return G
    sig, s = levels(model)
    filt = lambda sigma: denoiser_filter(l, c, sigma, model.flow_time, model.parameterisation)  # noqa: E731

    def step(carry, pair):  # one sampler step: multiply the gain by its factor
        g, f_now = carry
        s_i, s_next = pair
        f_next = filt(s_next)
        # Euler = DDIM: f_i + r_i (1 - f_i), exactly f_i on the final step to 0 (written this
        # way, not 1 + h (1 - f)/sigma, so that an unlearned direction ends at exactly 0)
        e = f_now + (s_next / s_i) * (1 - f_now)
        if model.sampler == "heun":
            a = (1 - f_now) / s_i
            b = (1 - f_next) / jnp.where(s_next > 0, s_next, 1)
            e = jnp.where(s_next > 0, 1 + 0.5 * (s_next - s_i) * (a + b * e), e)
        return (g * e, f_next), None

    pairs = (jnp.asarray(sig[:-1], l.dtype), jnp.asarray(sig[1:], l.dtype))
    start = jnp.asarray(s, l.dtype) * jnp.ones_like(l)
    (g, _), _ = jax.lax.scan(step, (start, filt(jnp.asarray(sig[0], l.dtype))), pairs)
    return g


def ancestral_gains(l, c, model):
    """Gain stack of DDPM (ancestral) sampling: the sample is ``sum_j U diag(G_j) U^T z_j``.

    In VE units (``y = x / sqrt(alpha_bar)``, ``sigma^2 = (1 - alpha_bar) / alpha_bar``) the DDIM
    update with eta = 1 (Ho et al.'s posterior variance, generalised to skipped steps) from
    ``sigma`` to ``sigma'`` is ``y' = D(y) + (sigma'/sigma)^2 (y - D(y)) + n xi``,
    ``n = sigma' sqrt(1 - (sigma'/sigma)^2)``: Song et al.'s ancestral step, per eigen-direction
    a factor ``e_i = f_i + r_i^2 (1 - f_i)`` (``r_i = sigma_{i+1}/sigma_i``) plus fresh noise.
    Hence, with ``P_j = prod_{i >= j} e_i`` (over the N steps i = 0..N-1):
    ``G_0 = s P_0`` (the start ``s z_0``) and ``G_j = n_{j-1} P_j``, j = 1..N-1 (the noise
    injected into level j; the final step, to 0, injects none).

    Args:
        l: eigenvalues of C (>= 0), shape ``[...]``; c: ridge, broadcasting with ``l``.
        model: a ``LinearDiffusion`` spec with ``sampler="ddpm"`` (static).

    Returns:
        G [N, ...] (N = steps = ``noises(model)``), dtype of ``l``.
    """
    l = jnp.asarray(l)
    c = jnp.asarray(c, l.dtype)
    l, c = jnp.broadcast_arrays(l, c)
    sig, s = levels(model)
    lead = (len(sig) - 1,) + (1,) * l.ndim  # the step axis, explicit (strict rank promotion)
    f = denoiser_filter(l[None], c[None], jnp.asarray(sig[:-1], l.dtype).reshape(lead), model.flow_time,
                        model.parameterisation)  # [N, ...]: f_i at sigma_i
    r2 = (sig[1:] / sig[:-1]) ** 2  # float64, 0 on the final step (there e = f)
    e = f + jnp.asarray(r2, l.dtype).reshape(lead) * (1 - f)
    tail = jnp.flip(jnp.cumprod(jnp.flip(e, 0), axis=0), 0)  # P_j = prod_{i >= j} e_i
    coef = np.concatenate([[s], sig[1:-1] * np.sqrt(1 - r2[:-1])])  # s, then n_0 .. n_{N-2}
    return jnp.asarray(coef, l.dtype).reshape(lead) * tail


def gain(l, lam, model):
    """The gain stack of any spectral model spec, ``[J, ...]`` (``J = noises(model)``).

    ``Linear``: ``sqrt_gain``; deterministic ``LinearDiffusion``: ``diffusion_gain`` (J = 1);
    ddpm: ``ancestral_gains``. ``l`` and ``lam`` broadcast.
    """
    if isinstance(model, Linear):
        return sqrt_gain(l, lam)[None]
    if model.sampler == "ddpm":
        return ancestral_gains(l, lam, model)
    return diffusion_gain(l, lam, model)[None]


class Spectral(NamedTuple):
    """A spectral model on one fit, for every lam: how it samples and the law it generates.

    Attributes:
        G: gains on the fit's eigenvalues, one row per noise [J, L, r]; G0: the gains
            ``G_j(0)`` off span(U) [J, L] (``x = sum_j G0_j z_j + U diag(G_j - G0_j) U^T z_j``,
            ``fit.sample``). ``G[0]`` is the start noise's gain: ``G[0] / s`` is the gain g
            that a centred model applies to its mean.
        excess, var0: the zero-mean law ``N(0, U diag(excess) U^T + var0 I)``:
            ``sum_j G_j^2 - sum_j G0_j^2`` [L, r] and ``sum_j G0_j^2`` [L]; for ``Linear``
            exactly ``l`` and ``lam`` (no ``(l + lam) - lam`` rounding).
    """

    G: jax.Array
    G0: jax.Array
    excess: jax.Array
    var0: jax.Array


def spectral(l, lam, model) -> Spectral:
    """``Spectral`` of eigenvalues ``l`` [r] (0 on padding) for every ``lam`` [L]: one gain
    evaluation (a diffusion sampler's ``lax.scan`` over its steps) serves both columns."""
    both = gain(jnp.concatenate([l, jnp.zeros((1,), l.dtype)])[None, :], lam[:, None], model)  # [J, L, r + 1]
    G, G0 = both[..., :-1], both[..., -1]
    if isinstance(model, Linear):
        return Spectral(G, G0, jnp.broadcast_to(l[None, :], G.shape[1:]), lam)
    var0 = jnp.sum(G0**2, axis=0)
    return Spectral(G, G0, jnp.sum(G**2, axis=0) - var0[:, None], var0)


# ------------------------------------------------------------------ the explicit loop


def sample_loop(evals, evecs, c, z, model, mean=None):
    """The real sampler update, step by step, with the dense denoiser ``D = U f U^T``.

    The reference the product formulas (``diffusion_gain``, ``ancestral_gains``) are tested
    against (and a template for non-linear denoisers): ``lax.scan`` over the schedule.

    Args:
        evals: eigenvalues l [d] of C; evecs: U [d, d], a full orthonormal basis.
        c: ridge [] (0 = Wiener).
        z: noise [J, S, d] (``J = noises(model)``; [S, d] is J = 1): ``z[0]`` starts the
            sampler (``x_T = s z[0]``), ``z[j]`` is the fresh noise of ddpm's step into level j.
        model: a ``LinearDiffusion`` spec with sampler ``ddim``, ``heun`` or ``ddpm``.
        mean: ``None`` (uncentred) or the training mean mu [d] of a centred denoiser
            ``D(y) = mu + U f U^T (y - mu)``.

    Returns:
        samples [S, d].
    """
    sig, s = levels(model)
    dt = evals.dtype
    z = z.reshape((-1,) + z.shape[-2:])
    mu = jnp.zeros((1, z.shape[-1]), dt) if mean is None else mean[None, :]

    def denoise(x, sigma):
        f = denoiser_filter(evals, c, sigma, model.flow_time, model.parameterisation)
        return mu + (x - mu) @ (evecs * f[None, :]) @ evecs.T

    def step(x, inp):
        s_i, s_next, xi = inp
        if model.sampler == "ddpm":  # Song et al.'s ancestral step, the score (D - x) / sigma^2
            score = (denoise(x, s_i) - x) / s_i**2
            noise = jnp.sqrt(s_next**2 * (s_i**2 - s_next**2) / s_i**2)
            return x + (s_i**2 - s_next**2) * score + noise * xi, None
        d_i = (x - denoise(x, s_i)) / s_i
        x_e = x + (s_next - s_i) * d_i
        if model.sampler == "ddim":
            return x_e, None
        safe = jnp.where(s_next > 0, s_next, 1)
        d_n = (x_e - denoise(x_e, safe)) / safe
        return jnp.where(s_next > 0, x + (s_next - s_i) * (d_i + d_n) / 2, x_e), None

    n = len(sig) - 1
    # [N, S, d]: step i's fresh noise z[i + 1]; none on the last (and none at all for J = 1)
    fresh = jnp.concatenate([z[1:], jnp.zeros((n + 1 - z.shape[0],) + z.shape[1:], dt)])
    xs = (jnp.asarray(sig[:-1], dt), jnp.asarray(sig[1:], dt), fresh)
    x, _ = jax.lax.scan(step, jnp.asarray(s, dt) * z[0], xs)
    return x


__all__ = ["karras", "vp", "vp_alpha_bar", "levels", "start_scale", "noises", "denoiser_filter", "sqrt_gain",
           "diffusion_gain", "ancestral_gains", "gain", "Spectral", "spectral", "sample_loop", "VP_BETA",
           "VP_T"]
