"""Sizes of the spectral engine's work: the padded training-set sizes, the fit branches, the
flops the bucket planner weighs and the bytes the chunk planner budgets (``run.plan``).

Pure arithmetic on the spec's integers; no JAX.
"""

from __future__ import annotations

import math

from ...run.plan import pad_groups
from ...specs import PowerLaw

# A fit branch (``fit.branched``) in the bucket planner's currency (``plan.COMPILE_SECONDS``,
# ``FLOPS_PER_SECOND``). A branch compiles in ~0.3 s on 2 CPU devices (0.32 s at d = 256, 0.25 s
# at d = 800), and the planner's 2e10 flop/s is ~4.5x below the rate its flop model runs at
# (~9e10 on 2 cores), so a branch is priced ~0.3 x 4.5 s. Measured (2 CPU devices): d = 800,
# gamma 0.1-1.6, 2 seeds takes one branch, first run 3.8 s against 3.9 s without, a compiled
# run 0.31 s against 0.43 s; the quick bench's grid (d = 256) would pay 0.32 s of compiling to
# save 0.045 s a run at 16 seeds, and takes a branch from 64 seeds up.
FIT_BRANCH_SECONDS = 1.4


def pad_rows(n: int, d: int) -> int:
    """The smallest static training-set size for n real rows (the planner may pad further).

    A ladder keeps the candidate shapes few (and shared between scans, so the persistent
    compilation cache hits): below d, steps of sqrt(2) rounded up to 8 (Gram route, ``eigh``
    cost n_pad^3); from d up, steps of 2 (covariance route, where n_pad only scales the draw
    and the memorisation distances: the covariance is a running sum over the real rows).
    """
    if n >= d:
        return d * 2 ** math.ceil(math.log2(n / d) - 1e-12)
    k = math.floor(2 * math.log2(n / d) + 1e-12)  # n <= d 2^(k/2+1/2)
    for step in (k, k + 1):
        cand = min(d, int(math.ceil(d * 2 ** (step / 2) / 8) * 8))
        if cand >= n:
            return cand
    return d


def fit_flops(width: int, d: int, formed: bool) -> float:
    """Rough flops of one fit of ``width`` columns: its eigh and, below d, the Gram matrix
    (when ``formed`` here, not kept by the unit) and U = X^T V."""
    gram = 0.0 if width >= d else 2.0 * d * width * width * (2 if formed else 1)
    return 9.0 * width**3 + gram


def fit_widths(ns, pads: dict[int, int], d: int, models: int) -> dict[int, tuple[int, ...]]:
    """n_pad -> the Gram size of each of its loads' own fit, in ascending n, 0 for the bucket's
    fit (``fit.branched``): where a fit branch saves more eigh time than it costs to compile.

    The same dynamic programme as the buckets (``pad_groups``), over a bucket's loads, with a
    branch's price (``FIT_BRANCH_SECONDS``) for a group below the bucket's width r and nothing
    for the bucket's own fit.

    Args:
        ns: the training-set sizes of the loads; pads: size -> n_pad (the buckets).
        d: the dimension; models: models evaluated per load (seeds x swept values x 2).
    """
    out = {}
    for n_pad in sorted(set(pads.values())):
        sizes = sorted(int(n) for n in ns if pads[int(n)] == n_pad)
        r = min(n_pad, d)
        widths = pad_groups(sizes, models, lambda n, r=r: min(pad_rows(n, d), r),
                            lambda m, r=r: fit_flops(m, d, formed=m < r),
                            fixed=lambda m, r=r: 0.0 if m == r else FIT_BRANCH_SECONDS)
        out[n_pad] = tuple(0 if widths[n] == r else widths[n] for n in sizes)
    return out


def model_flops(n_pad: int, d: int, n_lam: int, samples: int, noises: int = 1, dense: bool = False) -> float:
    """Rough flops of one model of one load at ``n_pad`` rows: what the bucket planner weighs
    (``plan.pad_groups``). Left out: what a unit pays once (``engine.loads``), the running sum
    of x x^T over its real rows or a Gram bucket's X X^T; each load pays its eigh and, on the
    Gram route, U = X^T V."""
    r = min(n_pad, d)
    fit = fit_flops(r, d, formed=False)
    generate = 2.0 * noises * samples * d * r + 2.0 * n_lam * samples * d * (r + n_pad)  # z U, x, distances
    return fit + generate + (9.0 * n_lam * d**3 if dense else 0.0)  # dense bulk: eigvalsh per lam


def point_bytes(spec, n_pad: int, n_lam: int, samples: int, itemsize: int, noises: int = 1,
                mean: bool = False) -> int:
    """Estimated peak bytes of one point (both models), the chunk-size model.

    ``noises``: J noise vectors per sample (ddpm: steps), held once for the pair, each
    projected on U per model; ``mean``: the law has a mean (Isotropic data or a centred model).
    """
    d, r = spec.d, min(n_pad, spec.d)
    dense = isinstance(spec, PowerLaw)
    per_model = (
        2 * n_pad * d  # X and its masked copy
        + 3 * r * r + 2 * d * r  # covariance/Gram, eigh workspace, eigenvectors
        + 3 * n_lam * samples * d  # generated samples, centred copies
        + 4 * n_lam * samples * n_pad  # cosines, correlations, distances
        + (6 * n_lam * d * d if dense else 0)  # W2 and Hellinger: eigvalsh per lam
        + noises * samples * r + 3 * noises * n_lam * (r + 1)  # projections of the noises; gain stack
        + ((2 + (3 * d if dense else 0)) * n_lam * d if mean else 0)  # mean, dmu; a dense eigh per lam
    )
    return (2 * per_model + noises * samples * d) * itemsize


def krylov_point_bytes(d: int, n_pad: int, n_lam: int, samples: int, m: int, block: int, itemsize: int) -> int:
    """Estimated peak bytes of one point by the Krylov route (its two models run one after the other)."""
    per_model = (
        n_pad * d  # X (drawn a few blocks at a time: no temporary of its size)
        + 5 * samples * m * d  # the bases, C times them, the spare row, the Ritz basis and vectors
        + 3 * n_lam * samples * d  # generated samples, centred copies
        + 6 * n_lam * samples * n_pad  # products, cosines, correlations, distances, masks
        + 5 * (m + 1) * block * d  # block Lanczos: basis, C times it, Ritz basis and vectors
        + samples * n_pad  # X V^T of one step
    )
    return (per_model + 2 * n_lam * samples * d + samples * d) * itemsize  # + the first model's samples
