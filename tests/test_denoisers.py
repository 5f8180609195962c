"""Denoiser engine: FFT fields, bias-freeness, ensembles == single models, pairs, loaders, scan.

Sizes are tiny (8x8 images, a few hundred steps) so the whole file runs in about a minute
on 2 CPU cores.
"""

import json
import re
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen.specs import Grid
from memgen.engines.denoisers import ConvDenoiser, ImageField, Images
from memgen.engines.denoisers import images as I
from memgen import observables as obs
from memgen.engines.denoisers import references as MM
from memgen.engines.denoisers import model as M
from memgen.engines.denoisers import sample as S
from memgen.engines.denoisers import train as T

SIZE = (8, 8)
TINY = ConvDenoiser(depth=3, width=8, steps=60, batch=8, samples=6, sample_steps=6, test=8, mse_sigmas=(0.1, 1.0))


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda: ConvDenoiser(depth=0), "ConvDenoiser.depth must be an integer >= 2, got 0"),
        (lambda: ConvDenoiser(network="unet", depth=7),
         "ConvDenoiser.depth must be an integer in [1, 6] for network='unet' (encoder-decoder levels), got 7"),
        (lambda: ConvDenoiser(network="resnet"), "ConvDenoiser.network must be 'bfcnn' or 'unet', got 'resnet'"),
        (lambda: ConvDenoiser(lr=-1.0), "ConvDenoiser.lr must be > 0, got -1.0"),
        (lambda: ConvDenoiser(sigma_min=1.0, sigma_max=0.5), "ConvDenoiser.sigma_max must be > sigma_min=1.0"),
        (lambda: ConvDenoiser(sampler="euler"), "ConvDenoiser.sampler must be 'ddim' or 'ascent'"),
        (lambda: ConvDenoiser(mse_sigmas=()), "ConvDenoiser.mse_sigmas must be"),
        (lambda: ImageField(size=(2, 8)), "ImageField.size must be a pair of integers"),
        (lambda: ImageField(alpha=-1.0), "ImageField.alpha must be >= 0, got -1.0"),
        (lambda: ImageField(f0=0.0), "ImageField.f0 must be > 0, got 0.0"),
        (lambda: ImageField(size=(8, 8), k=3), "ImageField.k must be a whole number of frequency shells"),
        (lambda: Images(source=""), "Images.source must be"),
        (lambda: Images(size=(8, 8), k=64), "Images.k must be < d=64, got 64"),
    ],
)
def test_spec_validation(make, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        make()


def test_specs_serialise_and_quick():
    from memgen.specs import to_dict

    d = to_dict(ConvDenoiser.quick())
    assert d["kind"] == "ConvDenoiser" and isinstance(d["mse_sigmas"], list)
    json.dumps([to_dict(ImageField()), to_dict(Images()), d])
    assert I.fourier_basis(SIZE)[0].shape == (64, 64)
    assert ImageField(size=SIZE, k=5).k == 5


def test_specs_are_values_for_stores_and_jit():
    """A spec read back from a store equals (and hashes as) the one written, so it finds the
    same compiled kernels; specs differing in any field are distinct dict keys and distinct
    jit static arguments (one compile each)."""
    from memgen.specs import from_dict, replace, to_dict

    for spec in (ConvDenoiser(), ConvDenoiser.quick(), TINY, ImageField(size=SIZE, alpha=1.5, k=5),
                 Images(source="grace_hopper", size=SIZE, k=3)):
        back = from_dict(json.loads(json.dumps(to_dict(spec))))
        assert type(back) is type(spec) and back == spec and hash(back) == hash(spec), spec
    variants = [TINY, replace(TINY, width=9), replace(TINY, lr=TINY.lr * 2), replace(TINY, mse_sigmas=(0.1,)),
                replace(TINY, padding="circular"), replace(TINY, sampler="ascent")]
    table = {v: i for i, v in enumerate(variants)}
    assert len(table) == len(variants)
    assert [table[from_dict(to_dict(v))] for v in variants] == list(range(len(variants)))
    f = jax.jit(lambda x, spec: x * spec.width, static_argnames="spec")
    f(1.0, spec=TINY)
    f(1.0, spec=from_dict(to_dict(TINY)))  # an equal spec: no second compile
    assert f._cache_size() == 1
    f(1.0, spec=variants[1])
    assert f._cache_size() == 2


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_field_covariance_matches_spectrum(seed, dtype):
    spec = ImageField(size=(6, 8), alpha=1.5, f0=0.7, k=1)
    x = I.sample_field(jax.random.key(seed), spec, 6000, dtype)
    assert x.dtype == dtype and x.shape == (6000, 6, 8)
    # float64 NumPy reference: circulant covariance with eigenvalues P, built from the real basis
    u, s = I.field_eigen(spec)
    np.testing.assert_allclose(u.T @ u, np.eye(48), atol=1e-12)
    ref = (u * s) @ u.T
    h, w = spec.size
    p = (np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 * h**2 + np.fft.fftfreq(w)[None, :] ** 2 * w**2) + 0.7) ** -1.5
    p /= p.mean()
    circ = np.real(np.fft.ifft2(p)).ravel()  # autocovariance at lag (a, b)
    lag = lambda i, j: ((i // w - j // w) % h) * w + (i % w - j % w) % w  # noqa: E731
    direct = np.array([[circ[lag(i, j)] for j in range(48)] for i in range(48)])
    np.testing.assert_allclose(ref, direct, atol=1e-12)
    assert abs(np.trace(ref) / 48 - 1.0) < 1e-12
    xf = np.asarray(x, np.float64).reshape(6000, -1)
    emp = xf.T @ xf / 6000
    assert np.max(np.abs(emp - ref)) < 6 * np.sqrt(2 * np.max(np.diag(ref)) ** 2 / 6000)


def test_synthetic_sets_and_loader(tmp_path, seed):
    from PIL import Image

    d = I.sample_disks(jax.random.key(seed), SIZE, 5)
    c = I.sample_calpha(jax.random.key(seed), SIZE, 5)
    for a in (d, c):
        assert a.shape == (5, 8, 8) and float(a.min()) >= -1e-12 and float(a.max()) <= 1 + 1e-12
    rng = np.random.default_rng(seed)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    imgs = I.load_images(str(tmp_path), SIZE)
    assert imgs.shape == (3, 8, 8) and 0 <= imgs.min() and imgs.max() <= 1
    np.save(tmp_path / "a.npy", rng.random((4, 16, 16)))
    assert I.load_images(str(tmp_path / "a.npy"), SIZE).shape == (4, 8, 8)
    hop = I.load_images("grace_hopper", SIZE)
    assert hop.shape[0] > 1000 and hop.shape[1:] == SIZE
    z = I.standardise(hop)
    assert abs(np.mean(z**2) - 1) < 1e-9 and np.abs(z.mean(0)).max() < 1e-9
    with pytest.raises(ValueError, match="Images.source"):
        I.load_images(str(tmp_path / "missing.npy"), SIZE)


def test_packaged_image_sets(monkeypatch):
    """The sets inside scikit-learn's and scikit-image's wheels load offline, as [N, H, W] in
    [0, 1]; without the package, a one-line error says what to install; a digits scan runs."""
    sizes = {"digits": 1797, "faces": 100, "brick": 4096, "grass": 4096, "gravel": 4096}
    for name, count in sizes.items():
        x = I.load_images(name, SIZE)
        assert x.shape == (count, 8, 8) and 0 <= x.min() < x.max() <= 1, name
    digits = I.load_images("digits", SIZE)
    assert digits.std(axis=(1, 2)).min() > 0.05  # real strokes, not blank
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ValueError, match=r"^Images.source='digits' needs scikit-learn: pip install 'memgen\[images\]'$"):
        I.load_images("digits", SIZE)
    monkeypatch.undo()
    ds = memgen.scan(Images(source="digits", size=SIZE, k=3), TINY, Grid(gamma=(2 / 64,), lam=(0.0,), seeds=1),
                     progress=False)
    assert np.all(np.isfinite(ds.to_array().values))


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("network,dtype,padding", [
    *[("bfcnn", dt, pad) for dt in (jnp.float32, jnp.float64) for pad in ("circular", "zeros")],
    ("unet", jnp.float32, "zeros"), ("unet", jnp.float64, "circular"),  # its padding is the BF-CNN's conv3x3
])
def test_bias_free(seed, dtype, padding, network):
    spec = ConvDenoiser(network=network, depth=4 if network == "bfcnn" else 2, width=6, padding=padding)
    graph = M.graphdef(spec, dtype)
    params = M.init_params(jax.random.key(seed), spec, dtype)
    apply = jax.jit(lambda p, y, s: M.apply(graph, p, y, s))
    # move the gains away from 1 so the conditioning is exercised
    params = jax.tree.map(lambda p: p + 0.3 * jnp.ones_like(p) if p.shape[0] == 8 else p, params)
    y = jax.random.normal(jax.random.key(seed + 1), SIZE, dtype)
    sig = jnp.asarray(0.7, dtype)
    d1 = apply(params, y, sig)
    assert d1.dtype == dtype and d1.shape == SIZE
    assert M.apply(graph, params, y[..., None], sig).shape == (8, 8, 1)
    # float32: D = y - f(y) cancels; the UNet's 18 layers leave ~1e-5 of |y| (not of |D|)
    tol = (1e-5 if network == "bfcnn" else 1e-4) if dtype == jnp.float32 else 1e-12
    for a in (0.01, 3.0, 250.0):
        np.testing.assert_allclose(apply(params, a * y, sig), a * d1, rtol=tol, atol=tol * a * float(jnp.abs(y).max()))
    assert float(jnp.abs(apply(params, jnp.zeros(SIZE, dtype), sig)).max()) == 0.0


def _unet_numpy(variables, y, sigma, spec, batch_ms=False):
    """The UNet in plain float64 NumPy, loop by loop (the reference of ``model.UNet``).

    ``y`` [B, H, W]. Norms divide by the running mean squares, or with ``batch_ms`` by the
    batch's (then the mean squares are returned too)."""
    params, stats = variables
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), nnx_pure(params))
    kern, scales, ups, gains = p["kernels"], p["scales"], p["ups"], p.get("gains", {})
    lo, hi = np.log(spec.sigma_min), np.log(spec.sigma_max)
    centres = np.linspace(lo, hi, 8)
    feat = np.exp(-0.5 * ((np.log(sigma) - centres) / ((hi - lo) / 7)) ** 2)

    def conv(x, w):  # x [B, H, W, C], w [3, 3, C, O]: correlation, zero or circular padding
        b, h, wd, _ = x.shape
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap" if spec.padding == "circular" else "constant")
        out = np.zeros((b, h, wd, w.shape[-1]))
        for i in range(3):
            for j in range(3):
                out += np.einsum("bhwc,co->bhwo", xp[:, i:i + h, j:j + wd], w[i, j])
        return out

    seen = []

    def layer(i, x):
        x = conv(x, kern[i])
        ms = np.mean(x**2, axis=(0, 1, 2)) if batch_ms else np.asarray(stats[i], np.float64)
        seen.append(ms)
        x = x * scales[i] / np.sqrt(ms + 1e-5)
        if gains:
            x = x * np.exp(feat @ gains[i])
        return np.maximum(x, 0.0)

    x, i, skips = y[..., None].astype(np.float64), 0, []
    for _ in range(spec.depth):
        x = layer(i + 1, layer(i, x))
        i += 2
        skips.append(x)
        b, h, wd, c = x.shape
        pooled = np.zeros((b, h // 2, wd // 2, c))
        for a in range(h // 2):
            for e in range(wd // 2):
                pooled[:, a, e] = x[:, 2 * a:2 * a + 2, 2 * e:2 * e + 2].mean(axis=(1, 2))
        x = pooled
    x = layer(i + 1, layer(i, x))
    i += 2
    for u in range(spec.depth):
        w = ups[u]
        b, h, wd, _ = x.shape
        o = w.shape[-1] // 4
        big = np.zeros((b, 2 * h, 2 * wd, o))
        for a in range(h):
            for e in range(wd):
                block = (x[:, a, e] @ w).reshape(b, 2, 2, o)
                big[:, 2 * a:2 * a + 2, 2 * e:2 * e + 2] = block
        x = np.concatenate([skips[spec.depth - 1 - u], big], axis=-1)
        x = layer(i + 1, layer(i, x))
        i += 2
    out = y - conv(x, p["out"])[..., 0]
    return (out, seen) if batch_ms else out


def nnx_pure(state):
    """An ``nnx.State`` as nested dicts of arrays, list indices as ints."""
    from flax import nnx

    return nnx.to_pure_dict(state)


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_unet_against_numpy(seed, padding):
    """The UNet at evaluation (running statistics) and in a training batch (batch statistics, a
    pmean over the vmapped batch) against the loop-by-loop NumPy reference, in float64 on fresh
    parameters with the scales, gains and statistics moved away from their initial values.
    Negative control: evaluation is not the batch-statistics model."""
    spec = ConvDenoiser(network="unet", depth=2, width=3, padding=padding)
    dt = jnp.float64
    graph = M.graphdef(spec, dt)
    params, stats = M.init_params(jax.random.key(seed), spec, dt)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: a + 0.3 * jnp.asarray(rng.standard_normal(a.shape)), params)
    stats = [jnp.asarray(rng.uniform(0.5, 2.0, s.shape)) for s in stats]
    y = jnp.asarray(rng.standard_normal((4, *SIZE)))
    sigma = 0.4
    got = jax.vmap(lambda yy: M.apply(graph, (params, stats), yy, sigma))(y)
    want = _unet_numpy((params, stats), np.asarray(y), sigma, spec)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    got_t, seen = jax.vmap(lambda yy: M.apply_train(graph, (params, stats), yy, sigma), axis_name=M.BATCH)(y)
    want_t, ms = _unet_numpy((params, stats), np.asarray(y), sigma, spec, batch_ms=True)
    np.testing.assert_allclose(got_t, want_t, rtol=1e-10, atol=1e-10)
    assert len(seen) == len(ms) == 4 * spec.depth + 2
    for a, b in zip(seen, ms):
        np.testing.assert_allclose(a[0], b, rtol=1e-10)
    assert not np.allclose(got_t, want, atol=1e-3)  # negative control


def test_unet_shapes_and_flop_count():
    """``model.conv_macs`` counts the UNet's multiply-adds: XLA's count of the forward pass is
    2x it within the extras (norms, gains, ReLUs, pooling); the negative control is the
    BF-CNN's count for the same width, rejected."""
    spec = ConvDenoiser(network="unet", depth=3, width=8, conditional=False)
    graph = M.graphdef(spec, jnp.float32)
    v = M.init_params(jax.random.key(0), spec, jnp.float32)
    y = jnp.zeros((16, 16), jnp.float32)
    fn = jax.jit(lambda v, y: M.apply(graph, v, y))
    assert fn(v, y).shape == (16, 16)
    xla = fn.lower(v, y).compile().cost_analysis()
    xla = (xla[0] if isinstance(xla, list) else xla)["flops"]
    ours = 2 * M.conv_macs(spec, (16, 16))
    assert 0.95 < xla / ours < 1.15, (xla, ours)
    bf = 2 * M.conv_macs(ConvDenoiser(depth=spec.depth, width=8), (16, 16))
    assert not 0.95 < xla / bf < 1.15  # negative control


def test_unet_depth_must_fit_the_image():
    grid = Grid(gamma=(1 / 64,), lam=(0.0,), seeds=1)
    with pytest.raises(ValueError, match=r"^ConvDenoiser.depth must be <= the halvings the image size 12x12 allows "
                                         r"\(the UNet's 3 levels need sides divisible by 8\), got 3$"):
        memgen.scan(ImageField(size=(12, 12), alpha=1.0, k=1), ConvDenoiser(network="unet"), grid, progress=False)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("network", ["bfcnn", "unet"])
def test_ensemble_equals_single_models(seed, network):
    spec = (ConvDenoiser(depth=3, width=6, steps=20, batch=8) if network == "bfcnn"
            else ConvDenoiser(network="unet", depth=2, width=4, steps=8, batch=8))
    field = ImageField(size=SIZE, alpha=1.0, k=5)
    K = 3
    data = I.sample_field(jax.random.key(seed), field, K * 16).reshape(K, 16, *SIZE)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(K))
    n = jnp.asarray([3, 9, 16])
    lam = jnp.asarray([0.0, 0.01, 0.1])
    pe, le = T.train_ensemble(keys, data, n, lam, spec=spec)
    assert le.shape == (K, spec.steps)
    for i in range(K):
        p1, l1 = T.train_one(keys[i], data[i], n[i], lam[i], spec=spec)
        np.testing.assert_allclose(le[i], l1, rtol=1e-9)
        for a, b in zip(jax.tree.leaves(pe), jax.tree.leaves(p1)):
            np.testing.assert_allclose(a[i], b, rtol=1e-8, atol=1e-10)
    # the loss depends on the training subset only through its first n rows
    data2 = data.at[0, 3:].set(100.0)
    _, l2 = T.train_one(keys[0], data2[0], n[0], lam[0], spec=spec)
    np.testing.assert_allclose(l2, le[0], rtol=1e-12)


def test_ddim_of_the_linear_model_is_its_closed_form(seed):
    """q_linear's samples: DDIM driven by the empirical Wiener denoiser C (C + s^2)^-1 is, per
    eigendirection of C, the product of its steps' gains, a float64 NumPy formula."""
    rng = np.random.default_rng(seed)
    d, n, steps = SIZE[0] * SIZE[1], 5, 7
    spec = ConvDenoiser(sample_steps=steps, samples=3, sigma_max=20.0, sigma_min=0.02)
    x = rng.standard_normal((8, d))  # n_max = 8 rows, the model trains on the first n
    z = rng.standard_normal((3, *SIZE))
    emp_s, emp_u = MM.empirical_eigen(jnp.asarray(x), jnp.asarray(n))
    den = lambda y, sig: MM.spectral_denoise(y.reshape(1, d), emp_u, emp_s, sig).reshape(SIZE)  # noqa: E731
    got = np.asarray(S.generate(den, jax.random.key(0), jnp.asarray(z), spec)).reshape(3, d)
    s, u = np.linalg.eigh(x[:n].T @ x[:n] / n)
    s = np.maximum(s, 0.0)

    def closed_form(ladder, final=True):
        a = s[None, :] / (s[None, :] + ladder[:, None] ** 2)  # the denoiser's gain at each level
        r = (ladder[1:] / ladder[:-1])[:, None]
        gain = spec.sigma_max * np.prod(a[:-1] + r * (1 - a[:-1]), axis=0) * (a[-1] if final else 1.0)
        return (z.reshape(3, d) @ u) * gain @ u.T

    ladder = np.geomspace(spec.sigma_max, spec.sigma_min, steps + 1)
    np.testing.assert_allclose(got, closed_form(ladder), rtol=1e-9, atol=1e-12)
    # negative controls: a linear ladder, or no final denoising step, is rejected
    for wrong in (closed_form(np.linspace(spec.sigma_max, spec.sigma_min, steps + 1)), closed_form(ladder, False)):
        assert np.max(np.abs(got - wrong)) > 1e-3


def test_samplers_share_noise_within_pair(seed):
    spec = ConvDenoiser(depth=3, width=6, sample_steps=5, samples=4)
    graph = M.graphdef(spec, jnp.float64)
    pa = M.init_params(jax.random.key(seed), spec, jnp.float64)
    z = jax.random.normal(jax.random.key(seed + 1), (4, *SIZE))
    key = jax.random.key(seed + 2)
    for sampler in ("ddim", "ascent"):
        sp = ConvDenoiser(depth=3, width=6, sample_steps=5, samples=4, sampler=sampler)
        gen = jax.jit(lambda p, k, z: S.generate(S.network(graph, p), k, z, sp))  # noqa: B023
        a = gen(pa, key, z)
        b = gen(pa, key, z)
        assert a.shape == (4, *SIZE) and a.dtype == z.dtype and bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_array_equal(a, b)  # same model, same z and key -> same samples
    c = gen(pa, jax.random.key(seed + 3), z)
    assert not np.allclose(a, c)  # the ascent sampler's injected noise comes from the key


def test_metrics_against_numpy(rng):
    x = rng.standard_normal((5, 12))
    tr = rng.standard_normal((7, 12))
    cos = (x / np.linalg.norm(x, axis=1)[:, None]) @ (tr / np.linalg.norm(tr, axis=1)[:, None]).T
    m = obs.memorisation(jnp.asarray(x), jnp.asarray(tr), jnp.asarray(4))["m"]
    np.testing.assert_allclose(m, np.abs(cos[:, :4]).max(1).mean(), rtol=1e-12)
    assert float(obs.memorisation(jnp.asarray(tr[:3]), jnp.asarray(tr), jnp.asarray(3))["m"]) == pytest.approx(1.0)
    v = np.linalg.qr(rng.standard_normal((12, 2)))[0]
    samples = jnp.asarray(30 * rng.standard_normal((40, 2)) @ v.T)
    assert float(obs.subspace_overlap(obs.top_eigvecs(samples, 2), jnp.asarray(v))) > 0.99
    s, u = MM.empirical_eigen(jnp.asarray(tr), jnp.asarray(7))
    c = tr.T @ tr / 7
    np.testing.assert_allclose(
        MM.spectral_denoise(jnp.asarray(x), u, s, jnp.asarray(0.5)), x @ (c @ np.linalg.inv(c + 0.25 * np.eye(12))).T,
        rtol=1e-8, atol=1e-10,
    )


# ----------------------------------------------------------------------------- engine


def test_scan_contract_pairs_and_chunking():
    data = ImageField(size=SIZE, alpha=1.0, k=5)
    grid = Grid(gamma=(2 / 64, 0.5), lam=(0.0, 0.05), seeds=1, seed=3)
    ds = memgen.scan(data, TINY, grid, progress=False, dtype=jnp.float64)
    assert set(ds.dims) == {"gamma", "lam", "seed", "sigma"}
    for v in ("m", "m_heldout", "q", "Q", "Q_heldout", "loss"):
        assert ds[v].dims == ("gamma", "lam", "seed")
    for v in ("mse", "mse_wiener", "mse_empirical"):
        assert ds[v].dims == ("gamma", "lam", "seed", "sigma")
    assert ds["n"].dims == ("gamma",) and ds["n"].values.tolist() == [2, 32] and ds["n"].dtype.kind == "i"
    assert ds.attrs["memgen_kind"] == "scan"
    spec = json.loads(ds.attrs["memgen_spec"])
    assert spec["data"]["kind"] == "ImageField" and spec["model"]["kind"] == "ConvDenoiser"
    assert spec["grid"]["gamma"] == [2 / 64, 0.5]
    assert np.all(np.isfinite(ds.to_array().values))
    assert np.all((ds.m.values > 0) & (ds.m.values <= 1 + 1e-12))
    # Gaussian data: the population Wiener filter is the optimal denoiser, so neither the
    # trained network nor the empirical (memorising) linear denoiser beats it, up to the
    # sampling error of the few test images
    assert np.all(ds.mse.mean("seed") >= ds.mse_wiener.mean("seed") * (1 - 0.05))
    assert np.all(ds.mse_empirical.mean("seed") >= ds.mse_wiener.mean("seed") - 1e-12)
    # chunking does not change results (keys come from grid coordinates, fixed micro-batch)
    # (the first scan ran at the default micro-batch, one pair: the same arithmetic)
    ds1 = memgen.scan(data, TINY, grid, progress=False, chunk=1, batch=1, dtype=jnp.float64)
    for v in ds.data_vars:
        _same(v, ds1[v].values, ds[v].values)


def _same(name, a, b):
    """Bit for bit, except the memorising reference denoiser's MSE: its eigh of a rank-deficient
    float32 covariance gave 2e-6 relative differences for identical inputs at two places of
    one CPU run (LAPACK), seen once in several runs; no order parameter depends on it."""
    if name == "mse_empirical":
        np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_scan_resumes_bit_identical(tmp_path):
    """A store with chunks missing (a killed scan) loads with NaN there and resumes exactly."""
    data = ImageField(size=SIZE, alpha=1.0, k=1)
    grid = Grid(gamma=(2 / 64, 0.25), lam=(0.0, 0.05), seeds=2, seed=5)
    out = tmp_path / "den"
    full = memgen.scan(data, TINY, grid, out=out, chunk=jax.device_count(), batch=1, progress=False)
    files = sorted((out / "chunks").glob("*.npz"))
    assert len(files) == 8 // min(8, jax.device_count())
    for f in files[: len(files) // 2]:
        f.unlink()
    (out / "results.nc").unlink()
    part = memgen.load(out)
    assert part.attrs["complete"] == 0 and np.isnan(part.q.values).any() and not np.isnan(part.q.values).all()
    resumed = memgen.scan(data, TINY, grid, out=out, chunk=jax.device_count(), batch=1, progress=False,
                          mode="resume")
    for v in full.data_vars:
        _same(v, resumed[v].values, full[v].values)
    np.testing.assert_array_equal(memgen.load(out).m.values, full.m.values)
    with pytest.raises(ValueError, match="another spec"):  # the micro-batch fixes the numbers: kept
        memgen.scan(data, TINY, grid, out=out, batch=2, progress=False, mode="resume")
    with pytest.raises(ValueError, match="lower --batch to"):
        memgen.scan(data, TINY, grid, memory="10MB", batch=64, progress=False)


def test_scan_bit_identical_on_one_and_two_devices(tmp_path):
    """The pair kernel is sharded over devices; 1 vs 2 forced host devices, bit for bit."""
    script = textwrap.dedent("""
        import sys, numpy as np, jax, memgen
        from memgen.engines.denoisers import ConvDenoiser, ImageField
        model = ConvDenoiser(depth=2, width=4, steps=10, batch=4, samples=4, sample_steps=3, test=4)
        ds = memgen.scan(ImageField(size=(6, 6), alpha=1.0, k=1), model,
                         memgen.Grid(gamma=[0.1, 0.5], lam=[0.0, 0.1], seeds=1), batch=1, progress=False)
        assert jax.device_count() == int(sys.argv[2]), jax.device_count()
        np.savez(sys.argv[1], **{k: ds[k].values for k in ds.data_vars})
    """)
    outs = ref.results_on_devices(script, (1, 2), tmp_path)
    for k in outs[0].files:
        _same(k, outs[0][k], outs[1][k])


def test_pair_draws_are_disjoint_halves():
    from memgen.engines.denoisers.engine import _Source

    src = _Source(ImageField(size=SIZE, k=5), 2 * 20, 4, jnp.float64)
    root = jax.random.key(0)
    pool, test = src.draw(root, 0)
    a, b = pool[:20].reshape(20, -1), pool[20:].reshape(20, -1)
    assert not np.any(np.all(np.isclose(a[:, None], b[None]), axis=-1))
    np.testing.assert_array_equal(pool, src.draw(root, 0)[0])  # a function of (root, seed)
    assert not np.allclose(pool, src.draw(root, 1)[0])
    hop = _Source(Images("grace_hopper", size=SIZE, k=3), 2 * 50, 10, jnp.float64)
    p2, t2 = hop.draw(root, 0)
    flat = np.concatenate([p2, t2]).reshape(110, -1)
    assert len({row.tobytes() for row in flat}) == 110  # A, B and test never share an image


@pytest.mark.parametrize("network", ["bfcnn", "unet"])
def test_bench_flop_count_matches_xla(network):
    """bench_denoisers' conv_flop_fraction counts 3 x the forward multiply-adds x 2 per training
    step; XLA's own count of the compiled step agrees to within its extras (ReLUs, gains, norms,
    AdamW). Negative control: counting the forward pass alone is rejected."""
    import importlib.util
    import pathlib

    from memgen.engines.denoisers import model as model_mod
    from memgen.engines.denoisers.train import optimizer, train_step

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_denoisers.py"
    spec_ = importlib.util.spec_from_file_location("bench_denoisers", path)
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    spec = ConvDenoiser(network=network, depth=4 if network == "bfcnn" else 2, width=16, batch=8, conditional=False)
    params = model_mod.init_params(jax.random.key(0), spec, jnp.float32)
    with jax.numpy_dtype_promotion("standard"):
        opt = optimizer(spec, jnp.float32(0.0)).init(params[0])
    data = jnp.zeros((32, 16, 16), jnp.float32)
    fn = jax.jit(lambda p, s: train_step(p, s, jax.random.key(1), data, 32, jnp.float32(0.0), spec=spec))
    xla = fn.lower(params, opt).compile().cost_analysis()
    xla = (xla[0] if isinstance(xla, list) else xla)["flops"]
    ours = bench.training_flops(spec, 16)
    assert 0.9 < xla / ours < 1.25, (xla, ours)
    assert not 0.9 < xla / (ours / 3) < 1.25  # negative control: the forward pass alone


# ------------------------------------------------------------------ planted spikes


def test_spike_directions_are_smooth_and_orthonormal(rng):
    v = I.spike_directions((8, 8), 3)
    np.testing.assert_allclose(v.T @ v, np.eye(3), atol=1e-12)

    def roughness(u):  # mean squared difference of neighbouring pixels over the mean square
        im = u.reshape(8, 8, -1)
        return (np.mean(np.diff(im, axis=0) ** 2) + np.mean(np.diff(im, axis=1) ** 2)) / np.mean(im**2)

    assert max(roughness(v[:, i : i + 1]) for i in range(3)) < 1.0  # measured 0.53-0.65
    assert roughness(rng.standard_normal((64, 1))) > 2.0  # negative control: a random direction (~3.7)


@pytest.mark.parametrize("beta", [(4.0,), ()], ids=["spiked", "control"])
def test_planted_field_has_the_spiked_covariance(beta):
    """A white field plus a spike of strength 4 has covariance I + 4 v v^T (float64 NumPy on the
    drawn pool, within 4 standard errors); the population eigenpairs and Q's directions follow.
    Control: without the spike, the same check of v^T C v = 5 fails."""
    from memgen.engines.denoisers.engine import _Source

    n = 6000
    src = _Source(ImageField(size=SIZE, alpha=0.0, beta=beta), n, 8, jnp.float64)
    pool, test = src.draw(jax.random.key(3), 0)
    x = pool.reshape(n, -1)
    v = I.spike_directions(SIZE, 1)[:, 0]
    proj = (x @ v) ** 2  # mean 1 + beta, variance 2 (1 + beta)^2
    assert abs(proj.mean() - 5.0) < 4 * np.sqrt(2 * 25 / n) if beta else abs(proj.mean() - 5.0) > 1
    other = np.linalg.qr(np.stack([v, np.random.default_rng(0).standard_normal(64)], axis=1))[0][:, 1]
    assert abs(np.mean((x @ other) ** 2) - 1.0) < 4 * np.sqrt(2 / n)
    if beta:
        np.testing.assert_allclose(src.latent[:, 0], v)
        assert abs(src.s[0] - 5.0) < 1e-9 and abs(abs(src.u[:, 0] @ v) - 1) < 1e-9
        assert test.shape == (8, *SIZE) and np.mean((test.reshape(8, -1) @ v) ** 2) > 1.5
    else:
        assert src.latent.shape == (64, 5)


def test_spiked_field_scan_scores_the_spike():
    """Q's directions are the spike: the Wiener baseline (the population's top eigenvector) scores 1."""
    data = ImageField(size=SIZE, alpha=0.0, beta=(9.0,))
    ds = memgen.scan(data, TINY, Grid(gamma=(0.25,), lam=(0.0,), seeds=1), progress=False)
    assert float(ds.Q_jac_heldout.min()) > 0.99
    assert all(np.isfinite(ds[v].values).all() for v in ("Q", "Q_jac", "Q_heldout", "m", "q"))
    assert memgen.specs.to_dict(ImageField()).get("beta") is None  # old stores keep their hash
