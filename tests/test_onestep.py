"""Halder's one-step model (lineardiff.md §1-4): the fit against NumPy's least squares, the
relative distance against the plain formulas, the divergences with a mean, the public
population limits, and the scan's qualitative law (H^2 = 1, KL = inf for n <= d; P(Delta > 0)
rising from 0)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen import observables
from memgen.engines.onestep import model as onestep
from memgen.theory import onestep as onestep_theory


@pytest.mark.parametrize("n,n_pad", [(5, 8), (30, 32)])  # n - 1 < d (minimum norm) and n > d
def test_fit_matches_numpy_least_squares(rng, n, n_pad):
    d, T = 12, 1.3
    X0 = 3.0 + 0.7 * rng.standard_normal((n_pad, d))
    XT = np.asarray(onestep.forward(X0, rng.standard_normal((n_pad, d)), T))
    with jax.enable_x64(True):
        law = onestep.fit(jnp.asarray(X0), jnp.asarray(XT), n, T)
        cov = np.asarray(law.evecs * law.var[None, :]) @ np.asarray(law.evecs).T
    mu, S = ref.onestep_law(X0[:n], XT[:n], T)
    np.testing.assert_allclose(law.mu, mu, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(cov, S, rtol=1e-8, atol=1e-9)
    assert int(law.rank) == min(n - 1, d)
    assert np.sum(np.asarray(law.var) > 0) == min(n - 1, d)  # exact zeros off the rank
    # negative control: the padding rows would change the fit if they were used
    mu_all, _ = ref.onestep_law(X0, XT, T)
    assert np.max(np.abs(mu_all - mu)) > 1e-3


def test_population_variance_public_value(rng):
    """Generated variance 1/(2 - e^-2T) = 0.504621 at T = 2 (lineardiff.md §4), and simulation at n >> d."""
    assert math.isclose(onestep_theory.variance(2.0), 0.504621, rel_tol=2e-6)
    d, n, T = 8, 40_000, 2.0
    X0 = 10.0 + rng.standard_normal((n, d))
    XT = onestep.forward(jnp.asarray(X0), jnp.asarray(rng.standard_normal((n, d))), T)
    law = onestep.fit(jnp.asarray(X0), XT, n, T)
    v = np.mean(np.asarray(law.var))
    assert abs(v - 0.504621) < 0.01
    assert abs(v - onestep_theory.variance(0.5)) > 0.05  # negative control: another horizon (0.613)


def test_public_hellinger_limits():
    for d, want in ((10, 0.24937), (100, 0.94321)):
        got = onestep_theory.values(np.array([10 * d]), d, 2.0)["h2"][0]
        assert math.isclose(got, want, rel_tol=2e-5), (d, got)
    vals = onestep_theory.values(np.array([5, 10, 11]), 10, 2.0)  # n - 1 < d: singular
    assert list(vals["h2"][:2]) == [1.0, 1.0] and np.isinf(vals["kl"][:2]).all() and np.isfinite(vals["kl"][2])


def test_divergences_with_a_mean_against_slogdet(rng):
    d = 7
    U = np.linalg.qr(rng.standard_normal((d, d)))[0]
    var = rng.uniform(0.2, 2.0, d)
    dmu = rng.standard_normal(d)
    with jax.enable_x64(True):
        got = observables.gaussian_divergences(jnp.asarray(var)[None], jnp.zeros(1), jnp.asarray(U), jnp.ones(d),
                                               jnp.zeros((d, 0)), jnp.zeros(0), True, dmu=jnp.asarray(dmu))
    want = ref.gaussian_divergences(U @ np.diag(var) @ U.T, np.eye(d), dmu)
    for k in want:
        np.testing.assert_allclose(got[k][0], want[k], rtol=1e-10, err_msg=k)
    with jax.enable_x64(True):  # negative control: the mean matters
        no_mean = observables.gaussian_divergences(jnp.asarray(var)[None], jnp.zeros(1), jnp.asarray(U),
                                                   jnp.ones(d), jnp.zeros((d, 0)), jnp.zeros(0), True)
    assert abs(float(no_mean["kl"][0]) - want["kl"]) > 1e-3


def test_relative_distance_against_the_plain_formulas(rng):
    """P - Q of observables (self-terms cancelled, log space) times (4 pi)^(-d/2) == e(T) - e(F) by scipy."""
    d, n, m = 5, 12, 40
    train = rng.standard_normal((n + 4, d))  # 4 padding rows
    fresh = rng.standard_normal((m, d))
    A = rng.standard_normal((d, d)) * 0.5
    S = A @ A.T + 0.3 * np.eye(d)
    mu = 0.2 * rng.standard_normal(d)
    var, U = np.linalg.eigh(S)
    with jax.enable_x64(True):
        e_t, e_f = n ** (-2 / d), m ** (-2 / d)
        a_t = observables.kde_pairs(jnp.asarray(train), n, e_t)
        b_t = observables.kde_cross(jnp.asarray(train), n, jnp.asarray(mu), jnp.asarray(U), jnp.asarray(var), e_t)
        a_f = observables.kde_pairs(jnp.asarray(fresh), m, e_f)
        b_f = observables.kde_cross(jnp.asarray(fresh), m, jnp.asarray(mu), jnp.asarray(U), jnp.asarray(var), e_f)
        delta = float(observables.relative_distance((a_t, b_t), (a_f, b_f)))
    P = np.exp(float(a_t)) + 2 * np.exp(float(b_f))
    Q = np.exp(float(a_f)) + 2 * np.exp(float(b_t))
    want = ref.halder_delta(train[:n], fresh, mu, S)
    np.testing.assert_allclose((P - Q) * (4 * np.pi) ** (-d / 2), want, rtol=1e-9)
    np.testing.assert_allclose(delta, (P - Q) / max(P, Q), rtol=1e-12)
    # negative control: another model law is a different Delta, which the comparison above rejects
    other = ref.halder_delta(train[:n], fresh, mu + 0.3, S)
    assert abs(other - want) > 1e-3 * abs(want)


def test_scan_singular_below_d_and_delta_rises():
    """n <= d: H^2 = 1 and KL = inf exactly; P(Delta > 0) = 0 at small n and > 0 at n = 10 d."""
    data = memgen.Isotropic(d=16, mean=10.0)
    model = memgen.OneStep(fresh=400, samples=6)
    ds = memgen.scan(data, model, memgen.Grid(gamma=[0.5, 1.0, 10.0], lam=[0.0], seeds=8), progress=False,
                     theory=True)
    assert ds.attrs["memgen_engine"] == "onestep" and "lam" not in ds.dims
    small = ds.sel(gamma=[0.5, 1.0])
    assert np.all(small["h2"].values == 1.0) and np.all(np.isposinf(small["kl"].values))
    assert np.all(np.isposinf(small["kl_rev"].values))
    big = ds.sel(gamma=10.0)
    assert np.all(np.isfinite(big["kl"].values)) and np.all(big["h2"].values < 1)
    p = ds["p_delta"].mean("seed")
    assert float(p.sel(gamma=0.5)) == 0.0 and float(p.sel(gamma=10.0)) > 0.2
    np.testing.assert_array_equal(ds["h2_theory"].sel(gamma=[0.5, 1.0]).values, 1.0)
    # the n -> inf limit is what the finite-n simulation approaches from above (H^2 is extensive in d)
    assert float(big["h2"].mean()) > float(ds["h2_theory"].sel(gamma=10.0)) - 0.05


def test_onestep_input_errors():
    with pytest.raises(ValueError, match="OneStep.horizon"):
        memgen.OneStep(horizon=0.0)
    with pytest.raises(ValueError, match="OneStep.fresh"):
        memgen.OneStep(fresh=1)
    with pytest.raises(ValueError, match="Isotropic.std"):
        memgen.Isotropic(std=-1.0)
    with pytest.raises(ValueError, match=r"Grid.lam must be \[0\] for the OneStep model"):
        memgen.scan(memgen.Isotropic(d=8), memgen.OneStep(), memgen.Grid(gamma=[1.0], lam=[0.1]))
    with pytest.raises(ValueError, match="data must be Isotropic for the OneStep model"):
        memgen.scan(memgen.Spiked(d=8), memgen.OneStep(), memgen.Grid(gamma=[1.0], lam=[0.0]))
    with pytest.raises(ValueError, match="n = round"):
        memgen.scan(memgen.Isotropic(d=8), memgen.OneStep(), memgen.Grid(gamma=[0.1], lam=[0.0]))
