"""Model specs: the linear generator, linear diffusion, Halder's one-step model and the convolutional denoiser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .checks import check_float, check_int, fail

@dataclass(frozen=True)
class Linear:
    """The regularised covariance-square-root generator x = (C + lam I)^(1/2) z.

    Attributes:
        samples: generated samples z per model and grid point (the E_z average).
        method: how ``(C + lam I)^(1/2)`` is applied. ``"eigh"``: one eigendecomposition of C
            (or of the Gram matrix) per training set, every stored variable exact.
            ``"krylov"``: matrix-free, C only applied as ``X^T (X v) / n`` (Lanczos spaces of
            the noise vectors, block Lanczos for the top eigenpairs; O(n d) per vector instead
            of O(n d^2 + d^3)); m, q, Q and top_eig to ~1e-5, w2 by stochastic Lanczos
            quadrature with its standard error ``w2_err``, no divergences (kl, kl_rev, h2);
            Spiked and Isotropic data; a grid point that cannot converge (n = d at lam = 0)
            is refused by name. ``"auto"`` (the CLI's default): krylov from d = 8192 up when
            every point converges, else eigh; a store records the method that ran.
    """

    samples: int = 32
    method: str = field(default="eigh", metadata={"absent": "eigh"})

    def __post_init__(self):
        check_int("Linear.samples", self.samples, 1)
        if self.method not in ("auto", "eigh", "krylov"):
            fail("Linear.method", "'auto', 'eigh' or 'krylov'", self.method)


@dataclass(frozen=True)
class LinearDiffusion:
    """A linear denoiser trained on one split, sampled as a diffusion model (lineardiff.md §1).

    The denoiser is ``D_sigma = U diag(f_sigma(l)) U^T`` with ``C = X^T X / n = U diag(l) U^T``
    (uncentred, like ``Linear``), or with ``centre=True`` ``D_sigma(y) = mu + U f U^T (y - mu)``
    with ``mu`` the training mean and ``C`` the centred covariance ``(X - mu)^T (X - mu) / n``; the
    grid's ``lam`` is its ridge ``c``, ``f = l / (l + c + sigma^2)`` (0: the exact Wiener
    minimiser of the training loss). Every sampler is a spectral gain, so the sample is
    ``(I - g(C)) mu + sum_j U diag(G_j(l)) U^T z_j`` from one ``eigh``: one noise z (J = 1) for
    the deterministic samplers, ``J = steps`` independent noises for ddpm (the start and one
    fresh noise per stochastic step), ``g = G_0 / s`` (``mu = 0`` uncentred).

    Attributes:
        sampler: ``"ode"`` (the exact probability-flow ODE from sigma_max to sigma_min),
            ``"ddim"`` (Euler on the probability flow = DDIM with eta = 0), ``"heun"`` (EDM's
            second-order sampler; the last step, to 0, is Euler) or ``"ddpm"`` (ancestral
            sampling: Ho et al.'s update generalised to skipped steps, i.e. DDIM with eta = 1,
            which on a VE schedule is the ancestral step of Song et al. 2021,
            ``x' = x + (sigma^2 - sigma'^2) score + sigma' sqrt(1 - sigma'^2/sigma^2) xi``; the
            final step, to 0, adds no noise). The two models of a pair share every noise: the
            start z and each step's fresh noise. EDM's stochastic sampler (churn) is not
            implemented.
        schedule: ``"ve"`` (Karras levels from sigma_max to sigma_min, ``rho``) or ``"vp"``
            (DDPM linear beta 1e-4 -> 1e-2 over T = 1000, timesteps
            ``round(linspace(999, 0, steps))``; sigma_max and sigma_min follow from it).
        steps: noise levels N >= 1 before the final step to 0 (ddim, heun, ddpm).
        sigma_max: starting noise level (VE; the sample starts from ``sigma_max z``); ``inf``
            is allowed for the ODE with a trained-to-convergence filter (then, with
            ``sigma_min^2 = lam``, the sample is exactly ``Linear``'s ``(C + lam I)^(1/2) z``).
        sigma_min: smallest Karras level (VE) > 0, where the ODE stops.
        rho: Karras exponent > 0.
        flow_time: ``None`` (denoiser trained to convergence) or the gradient-flow time t > 0
            (learning rate x steps) from zero weights (Merger & Goldt); needs ``lam = 0``.
        parameterisation: ``"x0"`` or ``"eps"``: what the gradient flow trains (it changes the
            result qualitatively; only used with ``flow_time``).
        denoise_final: ODE only: apply ``D_{sigma_min}`` to the ODE's output.
        centre: train the denoiser with an intercept (centred C, its mean restored); ``False``
            (default) is the uncentred denoiser, like the linear generator.
        samples: generated samples z per model and grid point (the E_z average).
    """

    sampler: str = "ddim"
    schedule: str = "ve"
    steps: int = 10
    sigma_max: float | None = None
    sigma_min: float | None = None
    rho: float = 7.0
    flow_time: float | None = None
    parameterisation: str = "x0"
    denoise_final: bool = False
    centre: bool = False
    samples: int = 32

    def __post_init__(self):
        if self.sampler not in ("ode", "ddim", "heun", "ddpm"):
            fail("LinearDiffusion.sampler", "'ode', 'ddim', 'heun' or 'ddpm'", self.sampler)
        if self.schedule not in ("ve", "vp"):
            fail("LinearDiffusion.schedule", "'ve' or 'vp'", self.schedule)
        check_int("LinearDiffusion.steps", self.steps, 1)
        if self.schedule == "vp":
            if self.sampler == "ode":
                fail("LinearDiffusion.schedule", "'ve' for the ode sampler (it has no steps to place)", self.schedule)
            if self.steps > 1000:
                fail("LinearDiffusion.steps", "<= 1000 with the VP schedule (T = 1000)", self.steps)
            for name in ("sigma_max", "sigma_min"):
                if getattr(self, name) is not None:
                    fail(f"LinearDiffusion.{name}", "unset with the VP schedule (its betas set the levels)",
                         getattr(self, name))
        else:
            smin = 0.002 if self.sigma_min is None else self.sigma_min
            smin = check_float("LinearDiffusion.sigma_min", smin, "> 0", lambda v: v > 0)
            smax = 80.0 if self.sigma_max is None else self.sigma_max
            if isinstance(smax, (int, float)) and not isinstance(smax, bool) and smax == math.inf:
                if self.sampler != "ode" or self.flow_time is not None:
                    fail("LinearDiffusion.sigma_max", "finite unless sampler='ode' with flow_time unset", smax)
                smax = math.inf
            else:
                smax = check_float("LinearDiffusion.sigma_max", smax, f"> sigma_min={smin}", lambda v: v > smin)
            object.__setattr__(self, "sigma_min", smin)
            object.__setattr__(self, "sigma_max", smax)
        object.__setattr__(self, "rho", check_float("LinearDiffusion.rho", self.rho, "> 0", lambda v: v > 0))
        if self.flow_time is not None:
            object.__setattr__(self, "flow_time", check_float("LinearDiffusion.flow_time", self.flow_time, "> 0",
                                                              lambda v: v > 0))
        if self.parameterisation not in ("x0", "eps"):
            fail("LinearDiffusion.parameterisation", "'x0' or 'eps'", self.parameterisation)
        if not isinstance(self.denoise_final, bool):
            fail("LinearDiffusion.denoise_final", "a bool", self.denoise_final)
        if self.denoise_final and self.sampler != "ode":
            fail("LinearDiffusion.denoise_final",
                 "False unless sampler='ode' (ddim, heun and ddpm end with a step to 0)", self.denoise_final)
        if not isinstance(self.centre, bool):
            fail("LinearDiffusion.centre", "a bool", self.centre)
        check_int("LinearDiffusion.samples", self.samples, 1)


@dataclass(frozen=True)
class OneStep:
    """Halder's solvable generative model: a linear one-step denoiser with intercept (arXiv 2411.17807).

    Each training point x0 is noised once, ``x_T = e^-T x0 - sqrt(l (1 - e^-2T)) xi`` with
    ``l = e^-2T``; ordinary least squares with intercept (minimum norm when n - 1 < d) maps
    x_T back to x0: ``x0_hat = b0 + B x_T``. Sampling ``x_T ~ N(e^-T xbar, c I)``,
    ``c = e^-2T sbar^2 + l (1 - e^-2T)`` (sbar^2: the training set's mean per-coordinate
    variance) gives the Gaussian law ``N(b0 + B e^-T xbar, c B B^T)`` (Halder's code writes
    ``c B^T B``; ``B B^T`` is the covariance of ``b0 + B x_T``).

    Attributes:
        horizon: the forward time T > 0 (Halder: 2).
        samples: generated samples per model and grid point, for m and q.
        fresh: size of the fresh set of the relative distance Delta (Halder: 10^4), >= 2.
    """

    horizon: float = 2.0
    samples: int = 32
    fresh: int = 10_000

    def __post_init__(self):
        object.__setattr__(self, "horizon", check_float("OneStep.horizon", self.horizon, "in (0, 20]",
                                                        lambda v: 0 < v <= 20))
        check_int("OneStep.samples", self.samples, 1)
        check_int("OneStep.fresh", self.fresh, 2)


@dataclass(frozen=True)
class ConvDenoiser:
    """A bias-free convolutional denoiser (Kadkhodaie et al.) trained and sampled per grid point.

    Attributes:
        network: ``"bfcnn"`` (a stack of 3x3 layers at one resolution, BF-CNN) or ``"unet"``
            (a bias-free UNet with bias-free normalisation: ``denoisers.model.UNet``).
        depth: BF-CNN: number of 3x3 conv layers, >= 2 (default 5). UNet: encoder-decoder
            levels, 1 to 6 (default 3); the image side must be divisible by ``2**depth``.
        width: channels of the hidden layers (the UNet's finest level; it doubles per level), >= 1.
        steps: optimiser steps per model, >= 1.
        batch: images per step, >= 1.
        lr: AdamW learning rate > 0 (the weight decay is the grid's ``lam``).
        sigma_min: smallest training / sampling noise level > 0.
        sigma_max: largest noise level > sigma_min (also the sampler's starting level).
        sampler: ``"ddim"`` (deterministic probability flow) or ``"ascent"`` (stochastic
            coarse-to-fine ascent of Kadkhodaie & Simoncelli 2021).
        sample_steps: sampler iterations, >= 1.
        samples: generated images per model, >= 2.
        padding: ``"zeros"`` (as Kadkhodaie et al.) or ``"circular"``. A circular CNN is
            exactly translation-equivariant: near-optimal on stationary fields (it can
            represent the Fourier-diagonal Wiener filter), but it can only memorise a
            training image up to translation, so m stays low at small n.
        conditional: noise-level conditioning by positive per-channel gains of the hidden
            layers (bias-free in y); ``False`` gives the blind BF-CNN of Kadkhodaie et al.
        mse_sigmas: noise levels at which the denoising MSE is reported.
        jacobian_sigma: noise level > 0 of the inputs at which Q_jac reads the model's mean
            Jacobian (``denoisers.jacobian``), in pixel-std units. For the optimal denoiser
            of a Gaussian the top eigenvectors do not depend on it, but the eigenvalue gaps
            ``s / (s + sigma^2)`` that the solver needs shrink as sigma^2 falls below the
            k-th variance: 1 keeps them open for unit-variance pixels.
        test: held-out images for the MSE, >= 1.
        ascent_h0: first step size of the ascent sampler, in (0, 1].
        ascent_beta: injected-noise control of the ascent sampler, in (0, 1] (1: none).
    """

    depth: int | None = None
    width: int = 16
    steps: int = 400
    batch: int = 32
    lr: float = 2e-3
    sigma_min: float = 0.02
    sigma_max: float = 5.0
    sampler: str = "ddim"
    sample_steps: int = 40
    samples: int = 16
    padding: str = "zeros"
    conditional: bool = True
    mse_sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)
    jacobian_sigma: float = 1.0
    test: int = 32
    ascent_h0: float = 0.1
    ascent_beta: float = 0.5
    # added with the UNet: absent means the BF-CNN (old stores keep their hash)
    network: str = field(default="bfcnn", metadata={"absent": "bfcnn"})

    def __post_init__(self):
        if self.network not in ("bfcnn", "unet"):
            fail("ConvDenoiser.network", "'bfcnn' or 'unet'", self.network)
        if self.depth is None:
            object.__setattr__(self, "depth", 3 if self.network == "unet" else 5)
        if self.network == "unet":
            if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 6:
                fail("ConvDenoiser.depth", "an integer in [1, 6] for network='unet' (encoder-decoder levels)",
                     self.depth)
        else:
            check_int("ConvDenoiser.depth", self.depth, 2)
        check_int("ConvDenoiser.width", self.width, 1)
        check_int("ConvDenoiser.steps", self.steps, 1)
        check_int("ConvDenoiser.batch", self.batch, 1)
        object.__setattr__(self, "lr", check_float("ConvDenoiser.lr", self.lr, "> 0", lambda v: v > 0))
        object.__setattr__(
            self, "sigma_min", check_float("ConvDenoiser.sigma_min", self.sigma_min, "> 0", lambda v: v > 0)
        )
        object.__setattr__(
            self,
            "sigma_max",
            check_float(
                "ConvDenoiser.sigma_max", self.sigma_max, f"> sigma_min={self.sigma_min}", lambda v: v > self.sigma_min
            ),
        )
        if self.sampler not in ("ddim", "ascent"):
            fail("ConvDenoiser.sampler", "'ddim' or 'ascent'", self.sampler)
        check_int("ConvDenoiser.sample_steps", self.sample_steps, 1)
        check_int("ConvDenoiser.samples", self.samples, 2)
        if self.padding not in ("circular", "zeros"):
            fail("ConvDenoiser.padding", "'circular' or 'zeros'", self.padding)
        if not isinstance(self.conditional, bool):
            fail("ConvDenoiser.conditional", "a bool", self.conditional)
        try:
            sig = tuple(float(s) for s in self.mse_sigmas)
        except (TypeError, ValueError):
            fail("ConvDenoiser.mse_sigmas", "a non-empty list of numbers > 0", self.mse_sigmas)
        if not sig or not all(math.isfinite(s) and s > 0 for s in sig) or len(set(sig)) != len(sig):
            fail("ConvDenoiser.mse_sigmas", "a non-empty list of distinct numbers > 0", self.mse_sigmas)
        object.__setattr__(self, "mse_sigmas", sig)
        object.__setattr__(self, "jacobian_sigma", check_float("ConvDenoiser.jacobian_sigma", self.jacobian_sigma,
                                                               "> 0", lambda v: v > 0))
        check_int("ConvDenoiser.test", self.test, 1)
        for name in ("ascent_h0", "ascent_beta"):
            v = check_float(f"ConvDenoiser.{name}", getattr(self, name), "in (0, 1]", lambda v: 0 < v <= 1)
            object.__setattr__(self, name, v)

    @classmethod
    def quick(cls, network: str = "bfcnn", **fields) -> "ConvDenoiser":
        """The ``--preset quick`` denoiser (``fields`` override it): on 8x8 fields (alpha = 2) it
        copies its one training image at n = 1 and draws new images close to the held-out
        baseline by n = 512, in about a minute for 5 loads x 2 seeds on 2 CPU cores (README).

        Scaled down from the denoiser figure: as deep and wide, trained as long (at n = 1 copying
        needs the steps; 300 steps copied nothing), sampled by stochastic ascent (with DDIM the
        samples at large n scored m 0.05 below the held-out baseline: too smooth). The UNet's
        preset keeps everything but the network: 2 levels of 8 and 16 channels, 32 in the
        middle (3 levels showed the same transition and took 117 s against 92 s)."""
        base = dict(depth=5, width=16, steps=2000, batch=16, lr=3e-3, sampler="ascent", sample_steps=25,
                    samples=16, test=32)
        if network == "unet":
            base.update(depth=2, width=8)
        return cls(network=network, **{**base, **fields})

    @classmethod
    def full(cls, **fields) -> "ConvDenoiser":
        """The ``--preset full`` denoiser (``fields`` override it), for 16x16 fields (alpha = 2)
        and n = 1 ... 1024: the quick preset's training and sampler with a UNet that sees the
        whole image, 3 levels of 16, 32, 64 channels, 128 in the middle (its coarsest image is
        2x2). There is no BF-CNN version: at 9 layers of width 16 (receptive field 19x19) it
        copied its one training image only partly (m 0.82 at n = 1; 0.87 with 4000 steps at
        lr 1e-3, and Q_jac 0.695 < 0.7 at n = 1024)."""
        return cls.quick("unet", **{"depth": 3, "width": 16, **fields})
