"""Model specs: the linear generator and the convolutional denoiser."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import check_float, check_int, fail

@dataclass(frozen=True)
class Linear:
    """The regularised covariance-square-root generator x = (C + lam I)^(1/2) z.

    Attributes:
        samples: generated samples z per model and grid point (the E_z average).
    """

    samples: int = 32

    def __post_init__(self):
        check_int("Linear.samples", self.samples, 1)


@dataclass(frozen=True)
class ConvDenoiser:
    """A bias-free CNN denoiser (BF-CNN, Kadkhodaie et al.) trained and sampled per grid point.

    Attributes:
        depth: number of 3x3 conv layers, >= 2.
        width: channels of the hidden layers, >= 1.
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
        test: held-out images for the MSE, >= 1.
        ascent_h0: first step size of the ascent sampler, in (0, 1].
        ascent_beta: injected-noise control of the ascent sampler, in (0, 1] (1: none).
    """

    depth: int = 5
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
    test: int = 32
    ascent_h0: float = 0.1
    ascent_beta: float = 0.5

    def __post_init__(self):
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
        check_int("ConvDenoiser.test", self.test, 1)
        for name in ("ascent_h0", "ascent_beta"):
            v = check_float(f"ConvDenoiser.{name}", getattr(self, name), "in (0, 1]", lambda v: 0 < v <= 1)
            object.__setattr__(self, name, v)

    @classmethod
    def quick(cls) -> "ConvDenoiser":
        """A small preset: a whole (gamma, lam, seed) scan in minutes on 2 CPU cores."""
        return cls(depth=4, width=8, steps=300, batch=16, sample_steps=25, samples=8, test=16)
