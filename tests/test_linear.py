"""fit / sample of the linear generator and the observables against the float64 NumPy/SciPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import RTOL
from memgen import observables
from memgen.engines.spectral import fit as linear
from memgen.engines.spectral.gains import sqrt_gain


def generate(fit, lam, z):
    """x = (C + lam I)^(1/2) z for every lam [L, S, d]: the linear generator's gain through ``sample``."""
    lam = jnp.asarray(lam)
    return linear.sample(fit, sqrt_gain(fit.evals[None, :], lam[:, None]), jnp.sqrt(lam), z)


def bulk_w2(evals, evecs, lam, sigma, isotropic):
    """bulk W2 of N(0, C + lam I): model variances l + lam, lam on the complement."""
    return observables.bulk_w2(jnp.broadcast_to(evals[None, :], lam.shape + evals.shape), lam, evecs, sigma, isotropic)

DTYPES = ["float32", "float64"]


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_pad,d", [(30, 30, 20), (45, 64, 20), (12, 12, 20), (9, 16, 20), (1, 8, 10)])
def test_generate_matches_sqrtm(rng, dtype, n, n_pad, d):
    """Both routes (covariance n_pad >= d, Gram n_pad < d), with padding rows ignored."""
    X = rng.standard_normal((n_pad, d)) * np.sqrt(rng.uniform(0.5, 2, d))
    z = rng.standard_normal((5, d))
    lam = np.array([0.0, 0.03, 1.7])
    fit = linear.fit(jnp.asarray(X, dtype), n)
    assert fit.evals.dtype == jnp.dtype(dtype) and fit.evecs.shape == (d, min(n_pad, d))
    x = generate(fit, jnp.asarray(lam, dtype), jnp.asarray(z, dtype))
    assert x.shape == (len(lam), 5, d) and x.dtype == jnp.dtype(dtype)
    for i, l in enumerate(lam):
        G = ref.sqrtm_generator(X[:n], l)
        assert _rel(x[i], z @ G.T) < RTOL[dtype], (l, _rel(x[i], z @ G.T))


@pytest.mark.parametrize("dtype", DTYPES)
def test_evals_and_top_evecs(rng, dtype):
    d, n = 16, 40
    X = rng.standard_normal((n, d))
    X[:, 0] *= 3
    fit = linear.fit(jnp.asarray(X, dtype), n)
    s_ref = np.linalg.eigvalsh(X.T @ X / n)
    np.testing.assert_allclose(fit.evals, s_ref, rtol=10 * RTOL[dtype], atol=10 * RTOL[dtype])
    u = np.asarray(linear.top_evecs(fit, 1))[:, 0]
    u_ref = np.linalg.eigh(X.T @ X / n)[1][:, -1]
    assert abs(abs(u @ u_ref) - 1) < 10 * RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_memorisation_matches_reference(rng, dtype):
    d, n, n_pad, S = 12, 7, 10, 6
    X = rng.standard_normal((n_pad, d))
    x = rng.standard_normal((2, S, d))
    x[0, 0] = X[3] + 0.01 * rng.standard_normal(d)  # one sample almost a copy
    out = observables.memorisation(jnp.asarray(x, dtype), jnp.asarray(X, dtype), n)
    for L in range(2):
        want = ref.memorisation(x[L], X[:n])
        for k in ("m", "m_kad", "mem_frac"):
            assert out[k].dtype == jnp.dtype(dtype)
            np.testing.assert_allclose(out[k][L], want[k], rtol=RTOL[dtype], atol=RTOL[dtype])
    assert float(out["mem_frac"][0]) >= 1 / S  # the copy is caught


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 43, 50])
def test_memorisation_in_row_blocks_matches_reference(rng, n):
    """``block=8`` over 50 padded rows (the last block clamped back to end at row 49): the
    same statistics as the NumPy reference on the first n rows. Sample 0's two nearest rows
    sit in different blocks and almost as close, so a merge that kept a block's own second
    neighbour would call it memorised; sample (1, 1) copies a row the clamped last block
    covers twice, so counting it twice would call it not memorised."""
    d, n_pad, S = 12, 50, 6
    X = rng.standard_normal((n_pad, d))
    x = rng.standard_normal((2, S, d))
    X[min(9, n - 1)] = X[0] + 0.02 * rng.standard_normal(d)  # the second neighbour, in block 1 when n > 9
    x[0, 0] = X[0] + 0.01 * rng.standard_normal(d)
    x[1, 1] = X[min(44, n - 1)] + 0.01 * rng.standard_normal(d)  # n = 50: in the clamped block's overlap
    out = observables.memorisation(jnp.asarray(x), jnp.asarray(X), n, block=8)
    for L in range(2):
        want = ref.memorisation(x[L], X[:n])
        for k in ("m", "m_kad", "mem_frac"):
            np.testing.assert_allclose(out[k][L], want[k], rtol=1e-12, atol=1e-12, err_msg=f"{k} n={n}")


@pytest.mark.parametrize("block", [None, 2])
def test_memorisation_counts_a_nearest_distance_reached_twice_as_its_second(block):
    """Exact ties (small integers: every distance exact): a sample at distance 1 from two copies
    of one row has nearest / second nearest = 1, not memorised; a rule that dropped every row at
    the nearest distance would take a far row as second and call it memorised. With
    ``block=2`` the copies sit in one block (rows 0, 1) and in two (rows 1, 3)."""
    x = np.array([[[2, 0, 0, 0], [9, 9, 9, 8]]], np.float32)  # sample 1: one row at distance 1
    for X in ([[1, 0, 0, 0], [1, 0, 0, 0], [9, 9, 8, 8]], [[9, 9, 8, 8], [1, 0, 0, 0], [5, 5, 5, 4], [1, 0, 0, 0]]):
        X = np.array(X, np.float32)
        out = observables.memorisation(jnp.asarray(x), jnp.asarray(X), X.shape[0], block=block)
        want = ref.memorisation(x[0].astype(np.float64), X.astype(np.float64))
        assert float(want["mem_frac"]) == 0.5  # sample 0 not memorised, sample 1 memorised
        assert float(out["mem_frac"][0]) == 0.5, f"{X.shape[0]} rows, block={block}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_latent_recovery_and_w2(rng, dtype):
    d, n, k = 14, 30, 2
    sigma = rng.uniform(0.3, 2.0, d)
    X = rng.standard_normal((n, d)) * np.sqrt(sigma)
    V = np.linalg.qr(rng.standard_normal((d, k)))[0]
    fit = linear.fit(jnp.asarray(X, dtype), n)
    Q = observables.subspace_overlap(linear.top_evecs(fit, k), jnp.asarray(V, dtype))
    np.testing.assert_allclose(Q, ref.latent_recovery(X, V), rtol=10 * RTOL[dtype])
    lam = np.array([0.0, 0.5])
    for isotropic, S in ((True, np.ones(d)), (False, sigma)):
        w = bulk_w2(*fit, jnp.asarray(lam, dtype), jnp.asarray(S, dtype), isotropic)
        want = [ref.w2(np.diag(S), X, l) for l in lam]
        np.testing.assert_allclose(w, want, rtol=10 * RTOL[dtype], atol=10 * RTOL[dtype])


def test_w2_thin_route_counts_the_null_space(rng):
    d, n = 20, 6
    X = rng.standard_normal((n, d))
    fit = linear.fit(jnp.asarray(X), n)
    assert fit.evecs.shape == (d, n)
    w = bulk_w2(*fit, jnp.asarray([0.0, 0.2]), jnp.ones(d), True)
    np.testing.assert_allclose(w, [ref.w2(np.eye(d), X, l) for l in (0.0, 0.2)], rtol=1e-7)


def test_convergence_is_mean_cosine(rng):
    a, b = rng.standard_normal((2, 3, 5, 9))
    q = observables.convergence(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_allclose(q, ref.cos(a, b).mean(-1), rtol=1e-12)


def test_gram_route_ignores_padding_exactly(rng):
    """Padding rows hold real random numbers: they must not leak into the fit."""
    d, n = 30, 10
    X = rng.standard_normal((16, d))
    f_pad = linear.fit(jnp.asarray(X), n)
    f_cut = linear.fit(jnp.asarray(X[:n]), n)
    z = jnp.asarray(rng.standard_normal((4, d)))
    lam = jnp.asarray([0.0, 0.1])
    np.testing.assert_allclose(generate(f_pad, lam, z), generate(f_cut, lam, z), atol=1e-10)
    assert jax.numpy.all(jnp.isfinite(f_pad.evecs))
