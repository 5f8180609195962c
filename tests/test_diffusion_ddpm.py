"""Linear diffusion, the rest of lineardiff.md §1: DDPM (ancestral) sampling, the centred
denoiser and Isotropic data on the spectral engine. Every new kernel against a plain float64
NumPy reference written from the update rules; DDPM simulation against its MP theory at
d = 300 (with the DDIM theory as a negative control); spec validation."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen import data as data_mod
from memgen.engines.spectral import engine as spectral
from memgen.engines.spectral import gains


def _dense_law(X, c, model):
    """(operators A_j [J, d, d], mean b [d]) of a sample ``x = sum_j A_j z_j + b``, by the real
    update with the dense denoiser ``D(y) = mu + F (y - mu)``, ``F = C (C + c + sigma^2)^-1``
    (NumPy float64; mu = 0 and C = X^T X / n unless ``model.centre``)."""
    n, d = X.shape
    eye = np.eye(d)
    if isinstance(model, memgen.Linear):
        return ref.sqrtm_generator(X, c)[None], np.zeros(d)
    mu = X.mean(0) if model.centre else np.zeros(d)
    C = (X - mu).T @ (X - mu) / n
    sig, s = gains.levels(model)
    A, b = [s * eye], np.zeros(d)  # y = sum_j A_j z_j + b; the sampler acts on y - mu
    for a, a_next in zip(sig[:-1], sig[1:]):
        F = C @ np.linalg.inv(C + (c + a**2) * eye)
        if model.sampler == "ddpm":  # y' = D + (a'/a)^2 (y - D) + a' sqrt(1 - (a'/a)^2) xi
            M = F + (a_next / a) ** 2 * (eye - F)
        else:  # Euler: y' = y + (a' - a) (y - D) / a, then Heun's corrector (not on the step to 0)
            M = eye + (a_next - a) / a * (eye - F)
            if model.sampler == "heun" and a_next > 0:
                F_next = C @ np.linalg.inv(C + (c + a_next**2) * eye)
                M = eye + (a_next - a) / 2 * ((eye - F) / a + (eye - F_next) / a_next @ M)
        A = [M @ Aj for Aj in A]
        b = mu + M @ (b - mu)
        if model.sampler == "ddpm" and a_next > 0:
            A.append(a_next * math.sqrt(1 - (a_next / a) ** 2) * eye)
    return np.stack(A), b


# ------------------------------------------------------------------ the gain formulas


@pytest.mark.parametrize("model", [
    memgen.LinearDiffusion(sampler="ddpm", steps=7, sigma_max=20, sigma_min=0.01),
    memgen.LinearDiffusion(sampler="ddpm", schedule="vp", steps=12),
    memgen.LinearDiffusion(sampler="ddpm", steps=5, flow_time=3.0, parameterisation="eps", centre=True),
    memgen.LinearDiffusion(sampler="heun", steps=6, sigma_max=20, sigma_min=0.01, centre=True),
])
def test_gain_stack_equals_the_step_loop(rng, model):
    """sum_j U G_j U^T z_j (+ (I - g(C)) mu) == the real update step by step (lax.scan), same
    noises, float64; and == the dense NumPy operators (ridge filters)."""
    d, n = 12, 9
    X = rng.standard_normal((n, d)) * np.linspace(0.3, 2.0, d) + 0.7
    mu = X.mean(0) if model.centre else np.zeros(d)
    l, U = np.linalg.eigh((X - mu).T @ (X - mu) / n)
    l = np.maximum(l, 0)
    J = gains.noises(model)
    assert J == (model.steps if model.sampler == "ddpm" else 1)
    z = rng.standard_normal((J, 5, d))
    c = 0.0 if model.flow_time is not None else 0.07
    with jax.enable_x64(True):
        loop = np.asarray(gains.sample_loop(jnp.asarray(l), jnp.asarray(U), c, jnp.asarray(z), model,
                                            jnp.asarray(mu) if model.centre else None))
        G = np.asarray(gains.gain(jnp.asarray(l), c, model))
    assert G.shape == (J, d)
    g = G[0] / gains.start_scale(model)  # the gain a centred model applies to its mean
    formula = np.einsum("jsd,de,je,fe->sf", z, U, G, U) + (mu - U @ (g * (U.T @ mu)))
    np.testing.assert_allclose(formula, loop, rtol=1e-10, atol=1e-12)
    if model.flow_time is None:
        A, b = _dense_law(X, c, model)
        np.testing.assert_allclose(formula, np.einsum("jsd,jed->se", z, A) + b, rtol=1e-9, atol=1e-11)
    # negative controls: the noises in another order; the stochastic steps without their noise
    if J > 1:
        mean = mu - U @ (g * (U.T @ mu))
        shuffled = np.einsum("jsd,de,je,fe->sf", z[::-1], U, G, U) + mean
        assert np.max(np.abs(shuffled - loop)) > 1e-2
        start_only = z[0] @ U @ np.diag(G[0]) @ U.T + mean
        assert np.max(np.abs(start_only - loop)) > 1e-2


def test_ddpm_at_full_T_is_ho_et_al():
    """steps = 1000 on VP is Ho et al.'s DDPM with the posterior variance beta_tilde, written in
    VP variables with the population eps-predictor (an independent derivation)."""
    l = np.array([1e-3, 0.1, 1.0, 10.0])
    model = memgen.LinearDiffusion(sampler="ddpm", schedule="vp", steps=1000)
    with jax.enable_x64(True):
        G = np.asarray(gains.gain(jnp.asarray(l), 0.0, model))  # [1000, 4]
    ab = gains.vp_alpha_bar()
    ab_prev = np.append(1.0, ab[:-1])

    def ho(posterior: bool):  # x = sum_j a_j z_j per direction: the coefficient of every noise
        coef = np.zeros((1000, len(l)))
        coef[0] = 1.0  # x_T = z_0
        for t in range(999, -1, -1):
            alpha, beta = ab[t] / ab_prev[t], 1 - ab[t] / ab_prev[t]
            eps = np.sqrt(1 - ab[t]) / (ab[t] * l + 1 - ab[t])  # the Wiener eps-predictor, per unit of x
            coef = coef * (1 - beta / np.sqrt(1 - ab[t]) * eps) / np.sqrt(alpha)
            if t > 0:  # sigma_t^2 = beta_tilde = (1 - ab_{t-1}) / (1 - ab_t) beta_t (or beta_t); 0 at t = 1
                coef[1000 - t] = np.sqrt((1 - ab_prev[t]) / (1 - ab[t]) * beta if posterior else beta)
        return coef

    np.testing.assert_allclose(G, ho(True), rtol=1e-9, atol=1e-14)
    # negative controls: Ho et al.'s other variance (beta_t), and the deterministic sampler, are other laws
    assert np.max(np.abs(np.sum(ho(False) ** 2, 0) / np.sum(G**2, 0) - 1)) > 0.01
    with jax.enable_x64(True):
        ddim_model = memgen.LinearDiffusion(sampler="ddim", schedule="vp", steps=1000)
        ddim = np.asarray(gains.diffusion_gain(jnp.asarray(l), 0.0, ddim_model))
    assert np.max(np.abs(np.sum(G**2, 0) / ddim**2 - 1)) > 0.05


# ------------------------------------------------------------------------ the engine


CASES = {  # (data, model, n, n_pad): a Gram-route and a covariance-route point
    "spiked-ddpm-vp-centred": (
        memgen.Spiked(d=14, beta=(3.0,)),
        memgen.LinearDiffusion(sampler="ddpm", schedule="vp", steps=5, centre=True, samples=5), 10, 12),
    "isotropic-linear": (memgen.Isotropic(d=14, mean=2.0, std=1.5), memgen.Linear(samples=5), 20, 32),
}


@pytest.mark.parametrize("case", list(CASES))
def test_point_matches_dense_reference(seed, case):
    """The engine's point (float64) == the real sampler with dense operators in NumPy, from the
    same documented draws (the step noises from fold_in(fold_in(root, s), 4)), every variable."""
    spec, model, n, n_pad = CASES[case]
    lam = np.array([0.0, 0.3])
    root, s_idx = jax.random.key(seed), 2
    J = gains.noises(model)
    with jax.enable_x64(True):
        beta = jnp.asarray(getattr(spec, "beta", ()), jnp.float64)
        kernel = jax.jit(partial(spectral.point, spec=spec, model=model, n_pad=n_pad, dtype=jnp.float64))
        out = kernel(jnp.uint32(s_idx), n, beta, jnp.asarray(1.0), jnp.asarray(lam), root)
        k_pop, k_a, k_b, k_z = spectral.point_keys(root, s_idx)
        pop = data_mod.population(k_pop, spec, beta, jnp.asarray(1.0), jnp.float64)
        Xa = np.asarray(data_mod.sample(k_a, pop, n))
        Xb = np.asarray(data_mod.sample(k_b, pop, n))
        k_steps = jax.random.fold_in(jax.random.fold_in(root, s_idx), 4)
        z = np.stack([np.asarray(data_mod.normal(k_z, (5, spec.d), jnp.float64))]
                     + [np.asarray(data_mod.normal(jax.random.fold_in(k_steps, j), (5, spec.d), jnp.float64))
                        for j in range(1, J)])
    if isinstance(spec, memgen.Isotropic):
        truth_mean, bulk = np.full(spec.d, spec.mean), spec.std**2 * np.eye(spec.d)
        full = bulk
    else:
        truth_mean, bulk = np.zeros(spec.d), np.diag(np.asarray(pop.sigma))
        V, b = np.asarray(pop.spikes), np.asarray(pop.beta)
        full = bulk + (V * b) @ V.T
    latent = np.asarray(pop.latent)
    rows = []
    for c in lam:
        row, xs = {}, []
        for X in (Xa, Xb):  # the pair: every variable is its mean, q is between the two
            A, mean = _dense_law(X, c, model)
            x = np.einsum("jsd,jed->se", z, A) + mean
            xs.append(x)
            S = np.einsum("jde,jfe->df", A, A)
            one = {**ref.memorisation(x, X), "w2": ref.w2_of(bulk, S),
                   **ref.gaussian_divergences(S, full, mean - truth_mean)}
            for k, v in one.items():
                row[k] = row.get(k, 0.0) + v / 2
        row["q"] = ref.cos(*xs).mean()
        rows.append(row)
    want = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    centre = getattr(model, "centre", False)
    Xs = [X - X.mean(0) if centre else X for X in (Xa, Xb)]
    want["Q"] = np.mean([ref.latent_recovery(X, latent) for X in Xs])
    want["top_eig"] = np.mean([np.linalg.eigvalsh(X.T @ X / n)[-1] for X in Xs])
    for key, val in want.items():
        np.testing.assert_allclose(out[key], val, rtol=1e-7, atol=1e-9, err_msg=key)
    if isinstance(model, memgen.Linear):  # n > d: a regular law, whose mean (dmu = -mean 1) counts
        assert np.all(np.isfinite(np.asarray(out["kl"])))
        A, _ = _dense_law(Xa, lam[1], model)
        assert ref.gaussian_divergences(A[0] @ A[0].T, full)["kl"] < want["kl"][1] - 0.1
    else:  # a ridge denoiser leaves C's null space at gain 0: singular for every lam when n < d
        assert np.all(np.isinf(np.asarray(out["kl"])))


@pytest.mark.parametrize("isotropic", [True, False])
def test_mean_divergences_against_slogdet(rng, isotropic):
    """The mean terms of KL both ways and H^2 (Woodbury over spikes; a dense Hellinger term for a
    non-isotropic bulk) == slogdet/solve of N(dmu, S) to N(0, Sigma), per lam."""
    from memgen.observables import gaussian_divergences

    d, r, k = 10, 6, 2
    U = np.concatenate([np.linalg.qr(rng.standard_normal((d, d)))[0][:, :r], np.zeros((d, 2))], axis=1)
    var0 = np.array([0.3, 0.05])
    var = np.concatenate([rng.uniform(0.2, 3.0, (2, r)), np.repeat(var0[:, None], 2, 1)], axis=1)
    sigma = np.ones(d) if isotropic else rng.uniform(0.3, 2.0, d)
    V, beta = np.linalg.qr(rng.standard_normal((d, k)))[0], np.array([2.0, 0.7])
    dmu = rng.standard_normal((2, d))
    args = [jnp.asarray(a) for a in (var - var0[:, None], var0, U, sigma, V, beta)]
    def both(dmu, *a):
        return gaussian_divergences(*a, isotropic=isotropic, dmu=dmu)

    with jax.enable_x64(True):
        got = jax.jit(both)(jnp.asarray(dmu), *args)
    Sigma = np.diag(sigma) + (V * beta) @ V.T
    for i in range(2):
        S = U @ np.diag(var[i] - var0[i]) @ U.T + var0[i] * np.eye(d)
        want = ref.gaussian_divergences(S, Sigma, dmu[i])
        for key in want:
            np.testing.assert_allclose(got[key][i], want[key], rtol=1e-10, err_msg=key)
        assert abs(ref.gaussian_divergences(S, Sigma)["h2"] - want["h2"]) > 1e-3  # the mean matters


def test_isotropic_scans_with_the_spectral_models():
    """Isotropic data runs with Linear (float32): no NaN anywhere, +inf only in the KLs (a singular
    law: lam = 0, n < d), Q of the mean direction ~1; no theory (refused in one line)."""
    data = memgen.Isotropic(d=16, mean=3.0, std=0.5)
    grid = memgen.Grid(gamma=[3.0], lam=[0.0, 0.1], seeds=2)  # one bucket: the Gram route is checked above
    ds = memgen.scan(data, memgen.Linear(samples=4), grid, progress=False)
    for v in ds.data_vars:
        assert np.all(np.isfinite(ds[v].values)), v
    assert np.all(ds.Q.values > 0.95)  # the uncentred C's top direction is the mean's
    # KL/d ~ (mean/std)^2 (+ O(1) of the bulk): the law has mean 0 where the truth has mean 1, and
    # variance ~mean^2 d along 1; each adds (mean/std)^2 / 2
    np.testing.assert_allclose(ds.kl.values, (3.0 / 0.5) ** 2, rtol=0.02)
    with pytest.raises(ValueError, match="theory: no asymptotic theory for Isotropic data"):
        memgen.theory(data, grid, model=memgen.Linear())
    with pytest.raises(ValueError, match="Grid.beta must be unset for Isotropic data"):
        memgen.scan(data, memgen.Linear(), memgen.Grid(beta=[1.0]), progress=False)


# -------------------------------------------------------------------------- theory


def test_ddpm_simulation_agrees_with_theory():
    """q, w2 and KL/d of DDPM (VP, 20 steps) at d = 300 within finite-size error of its MP theory
    (q = sum_j (E G_j)^2 / sum_j E G_j^2, the law's variance sum_j G_j^2). The denoiser is
    centred: the theory (of the uncentred one) holds for it to leading order, as claimed in
    ``theory.diffusion``. The DDIM theory of the same schedule is rejected (negative control).
    (One scan: its compile is most of this test's time; the uncentred VE sampler agrees as well,
    e.g. q = 0.8208 vs 0.8230 and KL/d = 0.3324 vs 0.3319 at gamma = 2, lam = 0.)"""
    data = memgen.Spiked(d=300, beta=2.0)
    steps = 20
    model = memgen.LinearDiffusion(sampler="ddpm", schedule="vp", steps=steps, centre=True, samples=32)
    grid = memgen.Grid(gamma=[2.0], lam=[0.0, 0.1], seeds=2)
    ds = memgen.scan(data, model, grid, progress=False, theory=True)
    sim = ds.mean("seed")
    tol = {"q": 0.015, "w2": 0.01, "kl": 0.01}
    for v, t in tol.items():
        np.testing.assert_allclose(sim[v].values, ds[f"{v}_theory"].values, atol=t, rtol=0.01, err_msg=v)
    ddim = memgen.theory(data, grid, model=memgen.LinearDiffusion(sampler="ddim", schedule="vp", steps=steps))
    for v in ("q", "kl"):
        assert np.max(np.abs(sim[v].values - ddim[v].values)) > 2 * tol[v], v


def test_theory_takes_a_gain_stack():
    """spectral_values: a stack of one noise is the plain gain; J copies of G / sqrt(J) keep the
    law (w2, KLs) and q."""
    from memgen.theory import diffusion

    gam = np.array([0.5, 2.0])
    lam = np.array([0.0, 0.2])
    def plain_gain(s):  # [G, L, K]
        return jnp.sqrt(s + lam[None, :, None])

    def stacked(s):  # [3, G, L, K]
        one = jnp.sqrt((s + lam[None, :, None]) / 3)
        return jnp.broadcast_to(one[None], (3,) + one.shape)

    with jax.enable_x64(True):
        plain = jax.jit(lambda g: diffusion.spectral_values(plain_gain, g))(gam[:, None])
        stack = jax.jit(lambda g: diffusion.spectral_values(stacked, g))(gam[:, None])
    for k in plain:
        np.testing.assert_allclose(stack[k], plain[k], rtol=1e-12, err_msg=k)


# ------------------------------------------------------------------ specs and memory


def test_spec_validation_is_one_line():
    for kw, match in [({"sampler": "edm"}, "LinearDiffusion.sampler must be 'ode', 'ddim', 'heun' or 'ddpm'"),
                      ({"centre": 1}, "LinearDiffusion.centre must be a bool"),
                      ({"sampler": "ddpm", "denoise_final": True}, "LinearDiffusion.denoise_final")]:
        with pytest.raises(ValueError, match=match) as e:
            memgen.LinearDiffusion(**kw)
        assert "\n" not in str(e.value)
    spec = memgen.LinearDiffusion(sampler="ddpm", centre=True)
    assert memgen.specs.from_dict(memgen.specs.to_dict(spec)) == spec
    with pytest.raises(ValueError, match="no asymptotic theory for Isotropic data"):
        memgen.theory(memgen.Isotropic(d=10), memgen.Grid(), model=memgen.LinearDiffusion(sampler="ddpm"))


def test_point_bytes_counts_the_step_noises():
    data, grid = memgen.Spiked(d=200), memgen.Grid(gamma=[2.0], lam=[0.0])
    ddim = memgen.engines.build(data, memgen.LinearDiffusion(steps=50), grid, jnp.float32)
    ddpm = memgen.engines.build(data, memgen.LinearDiffusion(sampler="ddpm", steps=50), grid, jnp.float32)
    extra = ddpm.point_bytes(400, 4) - ddim.point_bytes(400, 4)
    assert extra >= 4 * 49 * 32 * 200  # the 49 step noises [S, d], held once for the pair
