"""Data specs: Gaussian populations (Spiked, PowerLaw, Isotropic) for the linear models, image
data (ImageField, Images) for the denoisers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .checks import as_tuple, check_all, check_directions, check_float, check_int, check_size, fail

@dataclass(frozen=True)
class Spiked:
    """Sigma = I_d + sum_k beta_k v_k v_k^T with orthonormal v_k (theory.md §1).

    Attributes:
        d: dimension, >= 2.
        beta: spike strengths beta_k > 0, one per latent direction (rank = len(beta)).
        directions: ``"random"`` (Haar-random orthonormal, one draw per seed) or
            ``"axis"`` (the first coordinate axes; handy for tests).
    """

    d: int = 400
    beta: tuple[float, ...] = (2.0,)
    directions: str = "random"

    def __post_init__(self):
        check_int("Spiked.d", self.d, 2)
        object.__setattr__(self, "beta", as_tuple("Spiked.beta", self.beta))
        check_all("Spiked.beta", self.beta, "> 0", lambda b: b > 0)
        if len(self.beta) >= self.d:
            fail("Spiked.beta", f"fewer than d={self.d} spikes", len(self.beta))
        check_directions("Spiked.directions", self.directions)

    @property
    def rank(self) -> int:
        return len(self.beta)


@dataclass(frozen=True)
class PowerLaw:
    """Sigma = diag(sigma_i) + optional spikes, sigma_i ∝ i^(-alpha), tau(diag) = 1.

    The latent directions scored by Q are the spike directions when there are spikes,
    else the top-``k`` population eigenvectors (the first ``k`` coordinate axes).

    Attributes:
        d: dimension, >= 2.
        alpha: spectral exponent, >= 0 (0 is the identity).
        k: number of top population directions scored by Q when there are no spikes.
        beta: optional spike strengths added on top (empty: none).
        directions: spike directions, ``"random"`` or ``"axis"``.
    """

    d: int = 400
    alpha: float = 1.0
    k: int = 1
    beta: tuple[float, ...] = ()
    directions: str = "random"

    def __post_init__(self):
        check_int("PowerLaw.d", self.d, 2)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            fail("PowerLaw.alpha", "a number >= 0", self.alpha)
        check_all("PowerLaw.alpha", (float(self.alpha),), ">= 0", lambda a: a >= 0)
        object.__setattr__(self, "alpha", float(self.alpha))
        check_int("PowerLaw.k", self.k, 1)
        if self.k >= self.d:
            fail("PowerLaw.k", f"< d={self.d}", self.k)
        beta = () if self.beta in ((), None) else as_tuple("PowerLaw.beta", self.beta)
        if beta:
            check_all("PowerLaw.beta", beta, "> 0", lambda b: b > 0)
        object.__setattr__(self, "beta", beta)
        check_directions("PowerLaw.directions", self.directions)

    @property
    def rank(self) -> int:
        """Number of latent directions scored by Q."""
        return len(self.beta) if self.beta else self.k


#: Names of the data sets that :class:`Images` knows without a path.
@dataclass(frozen=True)
class Isotropic:
    """N(mean 1, std^2 I_d): an isotropic Gaussian with a constant mean vector (Halder's data).

    Attributes:
        d: dimension, >= 2 (Halder: 100, a 10 x 10 image).
        mean: every coordinate's mean (finite; Halder: 10).
        std: every coordinate's standard deviation > 0 (Halder: 1).
    """

    d: int = 100
    mean: float = 10.0
    std: float = 1.0

    def __post_init__(self):
        check_int("Isotropic.d", self.d, 2)
        object.__setattr__(self, "mean", check_float("Isotropic.mean", self.mean, "a finite number", lambda v: True))
        object.__setattr__(self, "std", check_float("Isotropic.std", self.std, "> 0", lambda v: v > 0))


BUILTIN_IMAGES = ("grace_hopper", "disks", "calpha", "digits", "faces", "brick", "grass", "gravel")


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
    """d = H W pixels; Q scores the top ``k`` directions, or the planted spikes when there are any."""

    @property
    def d(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def rank(self) -> int:
        """Latent directions Q scores: the spikes (``len(beta)``) if planted, else the top ``k``."""
        return len(self.beta) if self.beta else self.k

    def _check_spikes(self, kind: str) -> None:
        object.__setattr__(self, "beta", as_tuple(f"{kind}.beta", self.beta))
        if self.beta:
            check_all(f"{kind}.beta", self.beta, "> 0", lambda b: b > 0)
        if len(self.beta) > 8:
            fail(f"{kind}.beta", "at most 8 spikes (their smooth bumps sit on a circle in the image)", len(self.beta))


# Images get planted spikes in a later version: absent means none (old stores keep their hash).
_NO_SPIKES = field(default=(), metadata={"absent": ()})


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
            :func:`shell_sizes`: 1, 5, 9, ... on square grids). Unused with spikes.
        beta: strengths of planted spikes (default none): each image gets
            ``sum_i sqrt(beta_i) h_i v_i``, h ~ N(0, 1), along fixed smooth directions v_i
            (orthonormalised Gaussian bumps, ``images.spike_directions``), and Q then scores
            those directions. With alpha = 0 (a white bulk) the covariance is ``I + V diag(beta)
            V^T`` exactly: the linear model recovers spike i from gamma = 1/beta_i^2 (BBP).
    """

    size: tuple[int, int] = (16, 16)
    alpha: float = 2.0
    f0: float = 1.0
    k: int = 5
    beta: tuple[float, ...] = _NO_SPIKES

    def __post_init__(self):
        object.__setattr__(self, "size", check_size("ImageField.size", self.size))
        object.__setattr__(self, "alpha", check_float("ImageField.alpha", self.alpha, ">= 0", lambda a: a >= 0))
        object.__setattr__(self, "f0", check_float("ImageField.f0", self.f0, "> 0", lambda f: f > 0))
        check_int("ImageField.k", self.k, 1)
        self._check_spikes("ImageField")
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
            sets of Kadkhodaie et al. 2024, drawn afresh per seed), or, with ``memgen[images]``,
            ``"digits"`` (scikit-learn's 1,797 handwritten digits), ``"faces"`` (scikit-image's
            100 LFW faces) or the patches of a scikit-image texture (``"brick"``, ``"grass"``,
            ``"gravel"``).
        size: image shape (H, W), each >= 4.
        k: number of top eigenvectors of the whole set's covariance scored by Q (unused with
            spikes).
        beta: strengths of planted spikes (default none), as for ``ImageField``: added to the
            standardised images, and scored by Q.
    """

    source: str = "grace_hopper"
    size: tuple[int, int] = (16, 16)
    k: int = 5
    beta: tuple[float, ...] = _NO_SPIKES

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            fail("Images.source", f"a path or one of {list(BUILTIN_IMAGES)}", self.source)
        object.__setattr__(self, "size", check_size("Images.size", self.size))
        check_int("Images.k", self.k, 1)
        self._check_spikes("Images")
        if self.k >= self.d:
            fail("Images.k", f"< d={self.d}", self.k)
