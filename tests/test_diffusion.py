"""Linear diffusion (lineardiff.md): the public checks, the product formula against the real
step loop and a dense NumPy reference, the identity with the linear generator, the Gaussian
divergences, the theory (kappa, MP integrals of a gain) against closed forms and simulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen import data as data_mod
from memgen.engines.spectral import engine as spectral
from memgen.engines.spectral import fit as fit_mod
from memgen.engines.spectral import gains
from memgen.observables import gaussian_divergences
from memgen.spectra import powerlaw_spectrum
from memgen.theory import diffusion, spiked

L5 = np.array([1e-3, 1e-2, 0.1, 1.0, 10.0])
PUBLIC_GAINS = {  # lineardiff.md §4: Wiener denoiser, Karras rho = 7, smax = 80, smin = 0.002, x = 80 z
    ("ddim", 10): [0.020054, 0.067419, 0.225249, 0.750800, 2.479493],
    ("ddim", 18): [0.024667, 0.081025, 0.264545, 0.859455, 2.779280],
    ("heun", 18): [0.035641, 0.109017, 0.336312, 1.044729, 3.259847],
}
PUBLIC_VP = [0.15957, 0.18251, 0.50845, 0.75017, 0.76348]


def _g(model, l=L5, c=0.0):
    with jax.enable_x64(True):
        return np.asarray(gains.diffusion_gain(jnp.asarray(l, jnp.float64), c, model))


@pytest.mark.parametrize("sampler,steps", list(PUBLIC_GAINS))
def test_public_gains(sampler, steps):
    got = _g(memgen.LinearDiffusion(sampler=sampler, steps=steps, sigma_max=80, sigma_min=0.002))
    np.testing.assert_allclose(got, PUBLIC_GAINS[sampler, steps], rtol=1e-5, atol=6e-7)
    # negative control: the same table is missed by one step more, or by the other sampler
    other = _g(memgen.LinearDiffusion(sampler=sampler, steps=steps + 1))
    assert np.max(np.abs(other / PUBLIC_GAINS[sampler, steps] - 1)) > 1e-3


def test_public_vp_check():
    """VP DDIM (linear beta, T = 1000) is VE Euler at sigma = sqrt((1 - abar)/abar)."""
    G = _g(memgen.LinearDiffusion(sampler="ddim", schedule="vp", steps=10))
    np.testing.assert_allclose(G**2 / L5, PUBLIC_VP, rtol=2e-5)
    # the DDIM update written in VP variables, step by step (an independent derivation)
    ab = gains.vp_alpha_bar()
    seq = list(ab[np.round(np.linspace(999, 0, 10)).astype(int)]) + [1.0]
    x = np.ones_like(L5)
    for A, An in zip(seq[:-1], seq[1:]):
        eps = np.sqrt(1 - A) / (A * L5 + 1 - A) * x
        x = np.sqrt(An) * (x - np.sqrt(1 - A) * eps) / np.sqrt(A) + np.sqrt(1 - An) * eps
    np.testing.assert_allclose(G, x, rtol=1e-12)
    # negative control: the other common discretisation, linspace(1e-4, 1e-2, T), misses the check
    ab_other = np.cumprod(1 - np.linspace(1e-4, 1e-2, 1000))
    seq = list(ab_other[np.round(np.linspace(999, 0, 10)).astype(int)]) + [1.0]
    x = np.ones_like(L5)
    for A, An in zip(seq[:-1], seq[1:]):
        eps = np.sqrt(1 - A) / (A * L5 + 1 - A) * x
        x = np.sqrt(An) * (x - np.sqrt(1 - A) * eps) / np.sqrt(A) + np.sqrt(1 - An) * eps
    assert np.max(np.abs(x**2 / L5 / PUBLIC_VP - 1)) > 0.01


def test_karras_levels():
    sig = gains.karras(10, 80.0, 0.002)
    assert sig[0] == 80.0 and math.isclose(sig[-2], 0.002, rel_tol=1e-12) and sig[-1] == 0 and len(sig) == 11
    assert np.all(np.diff(sig) < 0)


@pytest.mark.parametrize("model", [
    memgen.LinearDiffusion(sampler="ddim", steps=7, sigma_max=20, sigma_min=0.01),
    memgen.LinearDiffusion(sampler="heun", steps=6, sigma_max=20, sigma_min=0.01),
    memgen.LinearDiffusion(sampler="heun", schedule="vp", steps=12),
    memgen.LinearDiffusion(sampler="ddim", steps=5, flow_time=3.0, parameterisation="eps"),
    memgen.LinearDiffusion(sampler="heun", steps=5, flow_time=0.5, parameterisation="x0"),
])
def test_product_formula_equals_the_step_loop(rng, model):
    """U g(l) U^T s z == the real sampler update applied step by step (float64, fresh C)."""
    d, n = 12, 9  # n < d: exact zero eigenvalues too
    X = rng.standard_normal((n, d)) * np.linspace(0.3, 2.0, d)
    C = X.T @ X / n
    l, U = np.linalg.eigh(C)
    l = np.maximum(l, 0)
    z = rng.standard_normal((5, d))
    c = 0.0 if model.flow_time is not None else 0.07
    with jax.enable_x64(True):
        loop = np.asarray(gains.sample_loop(jnp.asarray(l), jnp.asarray(U), c, jnp.asarray(z), model))
        G = np.asarray(gains.diffusion_gain(jnp.asarray(l), c, model))
    formula = z @ U @ np.diag(G) @ U.T
    np.testing.assert_allclose(formula, loop, rtol=1e-10, atol=1e-12)
    if model.flow_time is None:  # and both equal a dense NumPy operator written from the update rule
        sig, s = gains.levels(model)
        dense = ref.diffusion_operator(X, c, sig, s, model.sampler)
        np.testing.assert_allclose(formula, z @ dense.T, rtol=1e-9, atol=1e-11)
    wrong = memgen.LinearDiffusion(**{**vars(model), "steps": model.steps + 1})
    with jax.enable_x64(True):
        G_wrong = np.asarray(gains.diffusion_gain(jnp.asarray(l), c, wrong))
    assert not np.allclose(z @ U @ np.diag(G_wrong) @ U.T, loop, rtol=1e-6)


def test_ode_with_infinite_sigma_max_is_the_linear_generator(rng):
    """Exact ODE, Wiener, smax -> inf, smin^2 = lam: the samples ARE (C + lam I)^(1/2) z (float32, 1e-5)."""
    d, lam = 40, 0.09
    z = jnp.asarray(rng.standard_normal((6, d)), jnp.float32)
    for n in (25, 80):  # Gram and covariance routes
        X = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
        f = fit_mod.fit(X, n)
        ode = memgen.LinearDiffusion(sampler="ode", sigma_max=math.inf, sigma_min=math.sqrt(lam))
        lam_v = jnp.asarray([lam], jnp.float32)
        x_lin = fit_mod.sample(f, gains.sqrt_gain(f.evals[None], lam_v[:, None]), jnp.sqrt(lam_v), z)
        x_ode = fit_mod.sample(f, gains.diffusion_gain(f.evals[None], 0.0, ode), gains.diffusion_gain(
            jnp.zeros(1, jnp.float32), 0.0, ode), z)
        np.testing.assert_allclose(x_ode, x_lin, rtol=1e-5, atol=1e-5)
        # negative control: a finite sigma_max is a different model
        far = memgen.LinearDiffusion(sampler="ode", sigma_max=3.0, sigma_min=math.sqrt(lam))
        x_far = fit_mod.sample(f, gains.diffusion_gain(f.evals[None], 0.0, far), gains.diffusion_gain(
            jnp.zeros(1, jnp.float32), 0.0, far), z)
        assert np.max(np.abs(np.asarray(x_far) - np.asarray(x_lin))) > 1e-2


def test_ode_scan_equals_linear_scan():
    """The whole engine: the ODE member of the family scans to the linear generator's numbers."""
    data, grid = memgen.Spiked(d=30, beta=2.0), memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2)
    lin = memgen.scan(data, memgen.Linear(samples=4), memgen.Grid(gamma=[0.5, 2.0], lam=[0.04], seeds=2),
                      progress=False, theory=False)
    ode = memgen.scan(data, memgen.LinearDiffusion(sampler="ode", sigma_max=math.inf, sigma_min=0.2, samples=4),
                      grid, progress=False, theory=False)
    assert ode.attrs["memgen_engine"] == "linear_diffusion"
    for v in ("m", "q", "w2", "kl", "h2"):
        np.testing.assert_allclose(ode[v].values, lin[v].values, rtol=2e-5, atol=1e-6, err_msg=v)


@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_point_matches_dense_reference(seed, sampler):
    """The engine's point (float64) == a dense NumPy sampler per lam, every order parameter."""
    spec = memgen.Spiked(d=14, beta=(3.0,))
    model = memgen.LinearDiffusion(sampler=sampler, steps=6, sigma_max=10.0, sigma_min=0.05, samples=5)
    lam = np.array([0.0, 0.3])
    root = jax.random.key(seed)
    n, n_pad = 10, 16
    with jax.enable_x64(True):
        beta = jnp.asarray(spec.beta, jnp.float64)
        out = spectral.point(jnp.uint32(2), n, beta, jnp.asarray(0.0), jnp.asarray(lam), root, spec=spec,
                             model=model, n_pad=n_pad, dtype=jnp.float64)
        k_pop, k_a, k_b, k_z = spectral.point_keys(root, 2)
        pop = data_mod.population(k_pop, spec, beta, jnp.asarray(0.0), jnp.float64)
        Xa = np.asarray(data_mod.sample(k_a, pop, n))
        Xb = np.asarray(data_mod.sample(k_b, pop, n))
        z = np.asarray(data_mod.normal(k_z, (5, spec.d), jnp.float64))
    sig, s = gains.levels(model)
    V, b = np.asarray(pop.spikes), np.asarray(pop.beta)
    want = ref.naive_point(Xa, Xb, z, lam, np.asarray(pop.latent), np.eye(spec.d), np.eye(spec.d) + (V * b) @ V.T,
                           operator=lambda X, c: ref.diffusion_operator(X, c, sig, s, sampler))
    for key, val in want.items():
        np.testing.assert_allclose(out[key], val, rtol=1e-7, atol=1e-9, err_msg=key)
    assert np.isinf(out["kl"][0]) and out["h2"][0] == 1.0  # n < d, Wiener: G(0) = 0, a singular law


@pytest.mark.parametrize("isotropic", [True, False])
def test_gaussian_divergences_against_slogdet(rng, isotropic):
    d, r, k = 10, 6, 2
    U = np.linalg.qr(rng.standard_normal((d, d)))[0][:, :r]
    U = np.concatenate([U, np.zeros((d, 2))], axis=1)  # two padding columns
    var0 = np.array([0.3, 0.05])
    var = np.concatenate([rng.uniform(0.2, 3.0, (2, r)), np.repeat(var0[:, None], 2, 1)], axis=1)
    sigma = np.ones(d) if isotropic else rng.uniform(0.3, 2.0, d)
    V = np.linalg.qr(rng.standard_normal((d, k)))[0]
    beta = np.array([2.0, 0.7])
    excess = var - var0[:, None]
    with jax.enable_x64(True):
        got = gaussian_divergences(*map(jnp.asarray, (excess, var0, U, sigma, V, beta)), isotropic=isotropic)
    # negative control: the truth without its spikes is a different distance, which the very
    # check below rejects, for every divergence and row (a fixed margin of 1e-3 on kl alone was a
    # matter of the draw: 8.0e-4 at MEMGEN_TEST_SEED=1303042525)
    with jax.enable_x64(True):
        no_spike = gaussian_divergences(*map(jnp.asarray, (excess, var0, U, sigma, V[:, :0], beta[:0])),
                                        isotropic=isotropic)
    Sigma = np.diag(sigma) + (V * beta) @ V.T
    for i in range(2):
        S = U @ np.diag(var[i] - var0[i]) @ U.T + var0[i] * np.eye(d)
        want = ref.gaussian_divergences(S, Sigma)
        for key in want:
            np.testing.assert_allclose(got[key][i], want[key], rtol=1e-10, err_msg=key)
            with pytest.raises(AssertionError):
                np.testing.assert_allclose(no_spike[key][i], want[key], rtol=1e-10, err_msg=key)
    # a singular model law: +inf both ways and H^2 = 1, never NaN
    with jax.enable_x64(True):
        sing = gaussian_divergences(*map(jnp.asarray, (excess, np.zeros(2), U, sigma, V, beta)), isotropic=isotropic)
    assert np.all(np.isposinf(sing["kl"])) and np.all(np.isposinf(sing["kl_rev"])) and np.all(sing["h2"] == 1)


# ---------------------------------------------------------------------------- theory


def test_public_kappa():
    z = np.array([0.1, 0.1, 1.0, 0.0, 0.01])
    g = np.array([2.0, 0.5, 1.0, 0.5, 4.0])
    want = [0.174166, 1.184429, 1.618034, 1.000000, 0.013275]
    with jax.enable_x64(True):
        np.testing.assert_allclose(diffusion.kappa_isotropic(z, g), want, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(diffusion.kappa(z, g, np.ones(50)), diffusion.kappa_isotropic(z, g), rtol=1e-10)
        # an anisotropic spectrum: the bisection solves Silverstein's equation
        sigma = np.asarray(powerlaw_spectrum(jnp.asarray(1.0, jnp.float64), 200))
        k = np.asarray(diffusion.kappa(z, g, sigma))
        resid = k - z - k * np.mean(sigma / (sigma + k[:, None]), axis=1) / g
        np.testing.assert_allclose(resid, 0, atol=1e-10)
        assert np.max(np.abs(k - np.asarray(diffusion.kappa_isotropic(z, g)))) > 1e-2  # it is not the isotropic one


def test_public_abar():
    """E[(C + smin^2)^(1/2)]_kk for isotropic Sigma: the MP integral of sqrt(x + smin^2)."""
    with jax.enable_x64(True):
        got = spiked.sqrt_moment(np.array([2.0, 2.0, 0.5, 0.5]), np.array([0.0, 0.1, 0.0, 0.1]))
    np.testing.assert_allclose(got, [0.932799, 0.993088, 0.659589, 0.839628], rtol=2e-6)


def test_kl_of_the_exact_generator():
    """The MP integral of the linear generator's gain gives the closed form (1 + ((1-c)/c) ln(1-c))/2."""
    gam = np.array([1.0, 1.5, 2.0, 4.0, 100.0])
    th = memgen.theory(memgen.Spiked(d=100), memgen.Grid(gamma=list(gam), lam=[0.0]))
    with jax.enable_x64(True):
        closed = np.asarray(diffusion.kl_exact_generator(gam))
    np.testing.assert_allclose(th["kl"].values[:, 0], closed, rtol=1e-6)
    np.testing.assert_allclose(closed[-1], 1 / (4 * 100), rtol=0.02)  # ~ d/(4N)
    assert np.isinf(memgen.theory(memgen.Spiked(d=100), memgen.Grid(gamma=[0.5], lam=[0.0]))["kl"].values).all()


def test_wiener_ode_theory_is_the_linear_theory():
    """Exact ODE, smax = inf, smin^2 = lam: the diffusion theory reproduces the linear one."""
    data = memgen.Spiked(d=200, beta=2.0)
    lin = memgen.theory(data, memgen.Grid(gamma=[0.5, 2.0], lam=[0.25]))
    ode = memgen.theory(data, memgen.Grid(gamma=[0.5, 2.0], lam=[0.0]),
                        model=memgen.LinearDiffusion(sampler="ode", sigma_max=math.inf, sigma_min=0.5))
    for v in ("q", "w2", "kl", "kl_rev"):
        np.testing.assert_allclose(ode[v].values, lin[v].values, rtol=1e-8, err_msg=v)
    assert "m" not in ode and "m" in lin


@pytest.mark.parametrize("sampler,steps", [("ddim", 10), ("heun", 5)])
def test_simulation_agrees_with_theory(sampler, steps):
    """q, w2 and KL/d of DDIM/Heun at d = 300 within finite-size error of the MP theory; a
    theory for another step count is rejected (negative control)."""
    data = memgen.Spiked(d=300, beta=2.0)
    model = memgen.LinearDiffusion(sampler=sampler, steps=steps, samples=32)
    grid = memgen.Grid(gamma=[0.5, 2.0], lam=[0.0, 0.1], seeds=3)
    ds = memgen.scan(data, model, grid, progress=False, theory=True)
    sim = ds.mean("seed")
    for v, tol in (("q", 0.02), ("w2", 0.02)):
        np.testing.assert_allclose(sim[v].values, ds[f"{v}_theory"].values, atol=tol, err_msg=v)
    finite = np.isfinite(ds["kl_theory"].values)
    np.testing.assert_allclose(sim["kl"].values[finite], ds["kl_theory"].values[finite], rtol=0.05, atol=0.01)
    assert np.all(np.isinf(sim["kl"].values[~finite]))  # gamma < 1, Wiener: singular in both
    wrong = memgen.theory(data, grid, model=memgen.LinearDiffusion(sampler=sampler, steps=2))
    assert np.max(np.abs(sim["q"].values - wrong["q"].values)) > 0.05


def test_spec_validation_is_one_line():
    for kw, match in [({"sampler": "euler"}, "LinearDiffusion.sampler"),
                      ({"steps": 0}, "LinearDiffusion.steps"),
                      ({"sigma_min": 0.0}, "LinearDiffusion.sigma_min"),
                      ({"sigma_max": 0.001}, "LinearDiffusion.sigma_max"),
                      ({"sigma_max": math.inf}, "LinearDiffusion.sigma_max"),
                      ({"schedule": "vp", "sigma_max": 10.0}, "LinearDiffusion.sigma_max"),
                      ({"schedule": "vp", "sampler": "ode"}, "LinearDiffusion.schedule"),
                      ({"flow_time": -1.0}, "LinearDiffusion.flow_time"),
                      ({"denoise_final": True}, "LinearDiffusion.denoise_final")]:
        with pytest.raises(ValueError, match=match):
            memgen.LinearDiffusion(**kw)
    with pytest.raises(ValueError, match="Grid.lam must be 0 with LinearDiffusion.flow_time"):
        memgen.scan(memgen.Spiked(d=10), memgen.LinearDiffusion(flow_time=1.0), memgen.Grid(lam=[0.1]))
    with pytest.raises(ValueError, match="no asymptotic theory for Isotropic data"):
        memgen.theory(memgen.Isotropic(d=10), memgen.Grid(), model=memgen.LinearDiffusion())
