"""Frozen, validated specs for the denoiser engine: image data and the conv denoiser.

Same conventions as :mod:`memgen.config`: every spec validates itself at construction and
raises ``ValueError`` naming the parameter and its allowed range; fields are plain types or
tuples so that ``memgen.config.to_dict`` serialises them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import config
from ..config import check_int, fail

#: Names of the data sets that :class:`Images` knows without a path.
BUILTIN_IMAGES = ("grace_hopper", "disks", "calpha")


def _check_size(name: str, value: Any) -> tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        fail(name, "a pair of integers (H, W) >= 4", value)
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 4:
            fail(name, "a pair of integers (H, W) >= 4", value)
    return (h, w)


def _check_float(name: str, value: Any, rule: str, ok) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, rule, value)
    if not math.isfinite(value):
        fail(name, f"finite and {rule}", value)
    if not ok(value):
        fail(name, rule, value)
    return float(value)


def shell_sizes(size: tuple[int, int]) -> tuple[int, ...]:
    """Valid ``k`` for an image field: cumulative numbers of real Fourier modes per |f| shell.

    The power spectrum depends on |f| only, so modes of equal |f| are degenerate and the
    top-k eigenspace is well defined only when k ends a shell (1 = the DC mode, then e.g. 5,
    9, 13, 21 ... on a large square grid).
    """
    h, w = size
    radii = sorted(
        ((min(i, h - i) ** 2 + min(j, w - j) ** 2) for i in range(h) for j in range(w))
    )
    out, count = [], 0
    for a, b in zip(radii, radii[1:] + [None]):
        count += 1
        if a != b:
            out.append(count)
    return tuple(out)


class _ImageShape:
    """d = H W pixels; Q scores the top ``k`` directions."""

    @property
    def d(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def rank(self) -> int:
        return self.k


@dataclass(frozen=True)
class ImageField(_ImageShape):
    """Stationary Gaussian images with power spectrum P(f) ∝ (|f| + f0)^(-alpha) (theory.md §1).

    The covariance is diagonal in the 2-D Fourier basis; the spectrum is normalised to unit
    mean variance (tau(Sigma) = 1). Frequencies are in cycles per image (integers), so the
    top eigenvectors are the lowest-frequency real Fourier modes (cos/sin pairs).

    Attributes:
        size: image shape (H, W), each >= 4; d = H W.
        alpha: spectral exponent >= 0 (natural images: about 2; 0 is white noise).
        f0: frequency offset > 0 that keeps the DC mode finite.
        k: number of top eigenvectors scored by Q; must end a frequency shell (see
            :func:`shell_sizes`: 1, 5, 9, ... on square grids).
    """

    size: tuple[int, int] = (16, 16)
    alpha: float = 2.0
    f0: float = 1.0
    k: int = 5

    def __post_init__(self):
        object.__setattr__(self, "size", _check_size("ImageField.size", self.size))
        object.__setattr__(self, "alpha", _check_float("ImageField.alpha", self.alpha, ">= 0", lambda a: a >= 0))
        object.__setattr__(self, "f0", _check_float("ImageField.f0", self.f0, "> 0", lambda f: f > 0))
        check_int("ImageField.k", self.k, 1)
        shells = shell_sizes(self.size)
        valid = [s for s in shells if s < self.d]
        if self.k not in valid:
            fail("ImageField.k", f"a whole number of frequency shells, one of {valid[:8]}", self.k)


@dataclass(frozen=True)
class Images(_ImageShape):
    """A set of real (or synthetic) grayscale images, resized to (H, W), centred and scaled.

    Attributes:
        source: a path (``.npy``/``.npz`` array [N, H', W'(, C)], or a folder of PNG/JPEG
            files), or a built-in name: ``"grace_hopper"`` (non-overlapping patches of the
            photograph shipped with matplotlib), ``"disks"`` or ``"calpha"`` (the synthetic
            sets of Kadkhodaie et al. 2024, drawn afresh per seed).
        size: image shape (H, W), each >= 4.
        k: number of top eigenvectors of the whole set's covariance scored by Q.
    """

    source: str = "grace_hopper"
    size: tuple[int, int] = (16, 16)
    k: int = 5

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            fail("Images.source", f"a path or one of {list(BUILTIN_IMAGES)}", self.source)
        object.__setattr__(self, "size", _check_size("Images.size", self.size))
        check_int("Images.k", self.k, 1)
        if self.k >= self.d:
            fail("Images.k", f"< d={self.d}", self.k)


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
        object.__setattr__(self, "lr", _check_float("ConvDenoiser.lr", self.lr, "> 0", lambda v: v > 0))
        object.__setattr__(
            self, "sigma_min", _check_float("ConvDenoiser.sigma_min", self.sigma_min, "> 0", lambda v: v > 0)
        )
        object.__setattr__(
            self,
            "sigma_max",
            _check_float(
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
            v = _check_float(f"ConvDenoiser.{name}", getattr(self, name), "in (0, 1]", lambda v: 0 < v <= 1)
            object.__setattr__(self, name, v)

    @classmethod
    def quick(cls) -> "ConvDenoiser":
        """A small preset: a whole (gamma, lam, seed) scan in minutes on 2 CPU cores."""
        return cls(depth=4, width=8, steps=300, batch=16, sample_steps=25, samples=8, test=16)


__all__ = ["ImageField", "Images", "ConvDenoiser", "shell_sizes", "BUILTIN_IMAGES"]


# Register with the spec registry so stores written by denoiser scans round-trip (config.from_dict).
config.SPECS.update({cls.__name__: cls for cls in (ImageField, Images, ConvDenoiser)})
