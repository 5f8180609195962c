"""Q from the denoiser's mean Jacobian (``denoisers.jacobian``) and the block Lanczos under it.

Float64 references: ``numpy.linalg.eigh`` of the dense matrix, ``jax.jacfwd`` for the Jacobian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memgen import linalg
from memgen.engines.denoisers import jacobian


def _operator(rng, d, top):
    U, _ = np.linalg.qr(rng.normal(size=(d, d)))
    ev = np.concatenate([top, np.sort(rng.uniform(0.0, 1.0, d - len(top)))[::-1]])
    return (U * ev) @ U.T, U, ev


def test_block_lanczos_equals_eigh(rng):
    d, k = 64, 5
    A, U, ev = _operator(rng, d, [5.0, 4.0, 3.0, 2.5, 2.0])
    V0 = jnp.asarray(rng.normal(size=(d, k + jacobian.OVERSAMPLE)))
    s, V = linalg.top_eigh_matfree(lambda X: X @ jnp.asarray(A), V0.T, k, jacobian.BLOCKS)
    np.testing.assert_allclose(np.asarray(s), ev[:k], rtol=1e-4)
    overlap = np.sum((np.asarray(V).T @ U[:, :k]) ** 2) / k
    assert overlap > 1 - 1e-4
    np.testing.assert_allclose(np.asarray(V).T @ np.asarray(V), np.eye(k), atol=1e-10)
    # negative control: one block (no Krylov depth) is plain Rayleigh-Ritz on a random space
    _, V1 = linalg.top_eigh_matfree(lambda X: X @ jnp.asarray(A), V0.T, k, 1)
    assert np.sum((np.asarray(V1).T @ U[:, :k]) ** 2) / k < 0.9


def test_mean_jacobian_is_the_symmetrised_average(rng):
    d, B, b = 12, 3, 4
    W1, W2 = jnp.asarray(rng.normal(size=(d, d))), jnp.asarray(rng.normal(size=(d, d)))
    f = lambda y: W2 @ jnp.tanh(W1 @ y)  # noqa: E731  a non-symmetric, input-dependent Jacobian
    ys, V = jnp.asarray(rng.normal(size=(B, d))), jnp.asarray(rng.normal(size=(d, b)))
    J = np.mean([np.asarray(jax.jacfwd(f)(y)) for y in ys], axis=0)
    np.testing.assert_allclose(np.asarray(jacobian.mean_jacobian(f, ys)(V)), (J + J.T) / 2 @ np.asarray(V),
                               rtol=1e-10, atol=1e-12)
    assert not np.allclose(J @ np.asarray(V), (J + J.T) / 2 @ np.asarray(V))  # the symmetrisation is real


@pytest.mark.parametrize("sigma, tol", [(0.5, 1e-3), (1.0, 1e-5), (2.0, 1e-7)])
def test_wiener_filter_recovers_the_truth(rng, sigma, tol):
    """The optimal denoiser of a Gaussian: Q_jac = 1 whatever sigma (the perfect-model baseline),
    up to the block Lanczos's convergence, which the gap between the filter's gains sets: at
    sigma = 0.5 the k-th gain 4/4.25 = 0.94 sits near the bulk's up to 1/1.25 = 0.8, so 1 - Q
    reached 3.3e-4 (max over 300 seeds; 1.4e-6 at sigma = 1, 4e-9 at sigma = 2)."""
    d, k = 48, 3
    _, U, s = _operator(rng, d, [8.0, 6.0, 4.0])
    u = jacobian.top_subspace(jacobian.wiener(jnp.asarray(U), jnp.asarray(s), sigma), jax.random.key(0), d, k,
                              jnp.float64)
    assert np.sum((np.asarray(u).T @ U[:, :k]) ** 2) / k > 1 - tol
    # and the truth's directions are what it finds, not any top subspace: a shuffled truth scores low
    assert np.sum((np.asarray(u).T @ U[:, k:2 * k]) ** 2) / k < 1e-3
