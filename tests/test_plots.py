"""memgen.plots: render every figure on small synthetic Datasets and check what is drawn."""

import json

import matplotlib
import matplotlib.contour
import matplotlib.patches
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import QuadMesh
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from memgen import plots

GAMMA = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
LAM = np.array([0.0, 0.1, 1.0])
SCAN_VARS = ("m", "q", "w2", "m_kad", "mem_frac")


def make_scan(rng, seeds=4, lead=None, lam=LAM, gamma=GAMMA, spec=None, theory=False):
    """A Dataset with the layout of ``memgen.scan`` (random values, known shapes)."""
    dims, coords = [], {"gamma": gamma, "lam": lam, "seed": np.arange(seeds),
                        "n": ("gamma", np.round(gamma * 100).astype(int))}
    if lead is not None:
        dims.append(lead[0])
        coords[lead[0]] = np.asarray(lead[1], dtype=float)
    shape = tuple(len(coords[d]) for d in dims)
    full = (*dims, "gamma", "lam", "seed")
    data = {v: (full, rng.uniform(0.1, 0.9, shape + (len(gamma), len(lam), seeds))) for v in SCAN_VARS}
    for v in ("Q", "top_eig"):
        data[v] = ((*dims, "gamma", "seed"), rng.uniform(0.1, 0.9, shape + (len(gamma), seeds)))
    if theory:
        for v in ("q", "w2", "m"):
            data[v + "_theory"] = ((*dims, "gamma", "lam"), rng.uniform(0, 1, shape + (len(gamma), len(lam))))
        for v in ("Q", "top_eig"):
            data[v + "_theory"] = ((*dims, "gamma"), rng.uniform(0, 1, shape + (len(gamma),)))
    attrs = {"memgen_kind": "scan"}
    if spec is not None:
        attrs["memgen_spec"] = json.dumps(spec)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def make_theory(gamma=GAMMA, lam=LAM, lead=None):
    """A Dataset with the layout of ``memgen.theory``: smooth known functions of (gamma, lam)."""
    coords = {"gamma": gamma, "lam": lam}
    dims = []
    if lead is not None:
        dims.append(lead[0])
        coords[lead[0]] = np.asarray(lead[1], dtype=float)
    g = xr.DataArray(gamma, dims="gamma", coords={"gamma": gamma})
    lv = xr.DataArray(lam, dims="lam", coords={"lam": lam})
    q = (g / (1 + g)) * (1 + lv) / (1 + 2 * lv)
    ds = xr.Dataset({"q": q, "m": 1 / (1 + g + lv), "w2": lv + 1 / g, "Q": g / (1 + g), "top_eig": 1 + g})
    if lead is not None:
        ds = ds.expand_dims({lead[0]: coords[lead[0]]})
    ds.attrs["memgen_kind"] = "theory"
    return ds.transpose(*dims, "gamma", ...)


def containers(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def data_lines(ax):
    """Solid lines with data (theory curves), excluding legend proxies and axvlines."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 2]


def vlines_x(ax):
    """x positions of the vertical dashed lines (axvline: two equal x in axes coordinates)."""
    out = []
    for ln in ax.get_lines():
        x = np.asarray(ln.get_xdata(), dtype=float)
        if ln.get_linestyle() == "--" and x.size == 2 and x[0] == x[1]:
            out.append(float(x[0]))
    return sorted(out)


def legend_texts(ax):
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


# ------------------------------------------------------------------------ mean_sem


def test_mean_sem_matches_numpy(rng):
    ds = make_scan(rng, seeds=5, theory=True)
    mean, sem = plots.mean_sem(ds)
    x = ds["q"].values
    np.testing.assert_allclose(mean["q"].values, x.mean(-1), rtol=1e-12)
    np.testing.assert_allclose(sem["q"].values, x.std(-1, ddof=1) / np.sqrt(5), rtol=1e-12)
    assert "seed" not in mean.dims and "seed" not in sem.dims
    np.testing.assert_array_equal(mean["q_theory"].values, ds["q_theory"].values)  # no seed dim: unchanged
    assert np.all(sem["q_theory"].values == 0)
    assert mean.attrs["memgen_kind"] == "scan"
    np.testing.assert_array_equal(mean["n"].values, ds["n"].values)


def test_mean_sem_one_seed_and_nan(rng):
    ds = make_scan(rng, seeds=1)
    mean, sem = plots.mean_sem(ds)  # filterwarnings=error: a ddof warning would fail here
    np.testing.assert_allclose(mean["m"].values, ds["m"].values[..., 0])
    assert np.all(sem["m"].values == 0)
    ds3 = make_scan(rng, seeds=3)
    ds3["q"][0, 0, 0] = np.nan
    mean3, sem3 = plots.mean_sem(ds3)
    rest = ds3["q"].values[0, 0, 1:]
    np.testing.assert_allclose(mean3["q"].values[0, 0], rest.mean())
    np.testing.assert_allclose(sem3["q"].values[0, 0], rest.std(ddof=1) / np.sqrt(2))


# ---------------------------------------------------------------- order_parameters


def test_order_parameters_panels_lines_and_bbp(rng):
    spec = {"data": {"kind": "Spiked", "d": 100, "beta": [2.0]}, "grid": {"beta": None}}
    ds = make_scan(rng, spec=spec)
    th = make_theory()
    fig = plots.order_parameters(ds, theory=th)
    assert isinstance(fig, Figure)
    axm, axq, axQ = fig.axes
    assert [a.get_ylabel() for a in fig.axes] == [plots.LABELS[v] for v in ("m", "q", "Q")]
    assert all(a.get_xlabel() == plots.GAMMA_LABEL and a.get_xscale() == "log" for a in fig.axes)
    for ax in (axm, axq):
        cs = containers(ax)
        assert len(cs) == len(LAM)
        assert all(c.has_yerr for c in cs)
        lines = data_lines(ax)
        assert len(lines) == len(LAM)
        for c, ln in zip(cs, lines):  # theory in the colour of its points
            assert matplotlib.colors.same_color(c.lines[0].get_color(), ln.get_color())
    # points are the seed means, at the gamma coordinates
    x, y = containers(axq)[1].lines[0].get_data()
    np.testing.assert_allclose(x, GAMMA)
    np.testing.assert_allclose(y, ds["q"].sel(lam=0.1).mean("seed").values)
    # Q has no lam: one series, one theory line, BBP line at 1/beta^2 only there
    assert len(containers(axQ)) == 1 and len(data_lines(axQ)) == 1
    assert vlines_x(axQ) == pytest.approx([0.25])
    assert vlines_x(axm) == [] and vlines_x(axq) == []
    texts = legend_texts(axm)
    assert [t for t in texts if "lambda" in t] == [r"$\lambda = 0$", r"$\lambda = 0.1$", r"$\lambda = 1$"]
    assert "theory" in texts
    assert any("gamma_c" in t for t in legend_texts(axQ))


def test_order_parameters_one_seed_subset_and_no_beta(rng):
    ds = make_scan(rng, seeds=1)  # no spec: no BBP line
    fig = plots.order_parameters(ds, lam=[0.1, 1.0])
    axm, _, axQ = fig.axes
    assert len(containers(axm)) == 2
    assert not any(c.has_yerr for c in containers(axm))
    assert data_lines(axm) == []  # no theory given, none stored
    assert vlines_x(axQ) == []
    fig2 = plots.order_parameters(ds, beta_c=0.5)  # explicit beta: gamma_c = 4
    assert vlines_x(fig2.axes[2]) == pytest.approx([4.0])
    # power-law data with spikes: 1/beta^2 is not its transition, so no line unless asked
    pl = make_scan(rng, spec={"data": {"kind": "PowerLaw", "alpha": 1.0, "beta": [2.0]}})
    assert vlines_x(plots.order_parameters(pl).axes[2]) == []
    assert vlines_x(plots.order_parameters(pl, beta_c=2.0).axes[2]) == pytest.approx([0.25])
    # theory on another lam grid: a line only where the lam matches, with the theory values
    th = make_theory(gamma=np.geomspace(0.1, 10, 7), lam=np.array([0.0, 1.0]))
    lines = data_lines(plots.order_parameters(ds, theory=th).axes[1])
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_xdata(), th["gamma"].values)
    np.testing.assert_allclose(lines[1].get_ydata(), th["q"].sel(lam=1.0).values)


def test_order_parameters_stored_theory_and_missing_vars(rng):
    spec = {"data": {"kind": "Spiked", "beta": [1.0, 2.0]}}
    ds = make_scan(rng, theory=True, spec=spec)
    fig = plots.order_parameters(ds, variables=("m", "q", "Q", "w2"))
    assert len(fig.axes) == 4
    assert len(data_lines(fig.axes[3])) == len(LAM)  # w2_theory used
    assert vlines_x(fig.axes[2]) == pytest.approx([0.25, 1.0])
    # a denoiser scan: Q over (gamma, lam, seed), no w2 / top_eig
    den = ds[["m", "q"]].assign(Q=ds["m"] * 0.5)
    fig = plots.order_parameters(den)
    assert len(fig.axes) == 3 and len(containers(fig.axes[2])) == len(LAM)
    with pytest.raises(ValueError, match="beta"):
        plots.order_parameters(make_scan(rng, lead=("beta", [1.0, 2.0])))
    sel = make_scan(rng, lead=("beta", [1.0, 2.0])).sel(beta=2.0)  # scalar beta coord -> line
    assert vlines_x(plots.order_parameters(sel).axes[2]) == pytest.approx([0.25])


def test_requested_variable_or_lam_not_in_ds_raises(rng):
    ds = make_scan(rng)
    with pytest.raises(ValueError, match=r"\['nope'\] not in ds"):
        plots.order_parameters(ds, variables=("m", "nope"))
    with pytest.raises(ValueError, match=r"\['Q'\] not in ds"):
        plots.order_parameters(ds.drop_vars("Q"), variables=("m", "Q"))
    assert len(plots.order_parameters(ds.drop_vars("Q")).axes) == 2  # the default: only those present
    with pytest.raises(ValueError, match=r"lam=0.5 not in ds; available lam: \['0', '0.1', '1'\]"):
        plots.order_parameters(ds, lam=[0.5])
    with pytest.raises(ValueError, match=r"lam=0.5, 2 not in ds"):
        plots.order_parameters(ds, lam=[0.1, 0.5, 2.0])
    with pytest.raises(ValueError, match=r"lam=0.3 not in ds; available lam: \['0', '0.1', '1'\]"):
        plots.powerlaw_curves(make_scan(rng, lead=("alpha", [0.5, 1.0])), lam=0.3)


def test_requested_bbp_line_that_cannot_be_drawn_raises(rng):
    ds = make_scan(rng)
    for bad in (0.0, -2.0, np.nan, [2.0, 0.0]):
        with pytest.raises(ValueError, match="beta_c must be numbers > 0"):
            plots.order_parameters(ds, beta_c=bad)
        with pytest.raises(ValueError, match="beta_c must be numbers > 0"):
            plots.phase_diagram(ds, "q", beta_c=bad)
    with pytest.raises(ValueError, match="no Q"):  # the BBP line lives on the Q panel
        plots.order_parameters(ds, beta_c=2.0, variables=("m", "q"))
    with pytest.raises(ValueError, match=r"beta_c=\['0.1'\].*outside the gamma range \[0.25, 4\]"):
        plots.phase_diagram(ds, "q", beta_c=[2.0, 0.1])  # gamma_c = 100: off the map
    # a beta taken from the spec (not requested) whose line is off the map is left out
    far = make_scan(rng, spec={"data": {"kind": "Spiked", "beta": [0.1]}})
    ax = plots.phase_diagram(far, "q").axes[0]
    assert vlines_x(ax) == [] and ax.get_legend() is None


def test_all_nan_theory_is_not_drawn(rng):
    """No theory for a variable (all NaN, e.g. m of power-law data): no line, no error."""
    ds = make_scan(rng, theory=True)
    ds["m_theory"] = ds["m_theory"] * np.nan
    ds["m_theory"].attrs["note"] = "no asymptotic theory of m for this data"
    th = make_theory()
    th["m"] = th["m"] * np.nan
    for fig in (plots.order_parameters(ds), plots.order_parameters(ds.drop_vars("m_theory"), theory=th)):
        axm, axq, _ = fig.axes
        assert data_lines(axm) == []
        assert len(data_lines(axq)) == len(LAM)
        assert "theory" in legend_texts(axm)  # q has theory lines
    only_m = plots.order_parameters(ds, variables=["m"])
    assert data_lines(only_m.axes[0]) == [] and "theory" not in legend_texts(only_m.axes[0])
    pl = make_scan(rng, lead=("alpha", [0.5, 1.0]), theory=True)
    pl["m_theory"] = pl["m_theory"] * np.nan
    ax = plots.powerlaw_curves(pl, var="m").axes[0]
    assert data_lines(ax) == [] and "theory" not in legend_texts(ax) and len(containers(ax)) == 2
    ax = plots.powerlaw_curves(pl, var="q").axes[0]
    assert len(data_lines(ax)) == 2 and "theory" in legend_texts(ax)


# ------------------------------------------------------------------- phase_diagram


def test_phase_diagram_mesh_colourbar_contours_bbp(rng):
    spec = {"data": {"kind": "Spiked", "beta": [1.5]}}
    ds = make_scan(rng, spec=spec)
    th = make_theory(gamma=np.geomspace(0.25, 4, 30), lam=np.array([0.0, 0.05, 0.1, 0.5, 1.0]))
    fig = plots.phase_diagram(ds, "q", theory=th)
    ax = fig.axes[0]
    mean = ds["q"].mean("seed").transpose("lam", "gamma").values
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.norm.vmin == pytest.approx(mean.min()) and mesh.norm.vmax == pytest.approx(mean.max())
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(mean.shape), mean)
    cbar_ax = fig.axes[1]
    assert cbar_ax.get_ylabel() == plots.LABELS["q"]
    assert cbar_ax.get_ylim() == pytest.approx((mean.min(), mean.max()))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    # one row per lam, all of equal height, labelled with the lam values
    rows = np.asarray(mesh.get_coordinates())[:, 0, 1]
    np.testing.assert_allclose(np.diff(rows), 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{v:g}" for v in sorted(ds["lam"].values)]
    lo, hi = ax.get_ylim()
    assert lo == -0.5 and hi == ds.sizes["lam"] - 0.5
    assert ax.get_xlabel() == plots.GAMMA_LABEL and "lambda" in ax.get_ylabel()
    contours = [c for c in ax.collections if isinstance(c, matplotlib.contour.ContourSet)]
    assert len(contours) == 1 and len(contours[0].levels) >= 1
    assert all(mean.min() < lv < mean.max() for lv in contours[0].levels)
    assert vlines_x(ax) == pytest.approx([1 / 1.5**2])
    # drawing into a given Axes: same Figure back, two betas -> two lines, one legend entry
    fig2 = Figure()
    ax2 = fig2.add_subplot()
    assert plots.phase_diagram(ds, "q", ax=ax2, beta_c=[1.0, 2.0]) is fig2
    assert vlines_x(ax2) == pytest.approx([0.25, 1.0])
    assert legend_texts(ax2) == [r"$\gamma_c = 1/\beta^2$"]


def test_phase_diagram_positive_lam_single_seed_no_theory(rng):
    ds = make_scan(rng, seeds=1, lam=np.array([0.01, 0.1, 1.0]))
    fig = plots.phase_diagram(ds, "m")
    ax = fig.axes[0]
    assert not [c for c in ax.collections if isinstance(c, matplotlib.contour.ContourSet)]
    assert vlines_x(ax) == []
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.norm.vmax == pytest.approx(ds["m"].max())
    np.testing.assert_allclose(np.diff(np.asarray(mesh.get_coordinates())[:, 0, 1]), 1.0)  # equal rows
    # a dense lam grid is a continuous log axis instead
    dense = make_scan(rng, seeds=1, lam=np.geomspace(0.01, 1.0, 12))
    ax = plots.phase_diagram(dense, "m").axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert 0 < lo < 0.01 and hi > 1.0
    with pytest.raises(ValueError, match="Q"):
        plots.phase_diagram(ds, "Q")  # Q has no lam axis
    with pytest.raises(ValueError, match="nope"):
        plots.phase_diagram(ds, "nope")


# -------------------------------------------------------- latent_recovery / powerlaw


def test_latent_recovery_per_beta(rng):
    betas = [0.8, 1.5, 3.0]
    ds = make_scan(rng, lead=("beta", betas))
    th = make_theory(gamma=np.geomspace(0.2, 5, 20), lead=("beta", betas))
    fig = plots.latent_recovery(ds, theory=th)
    ax = fig.axes[0]
    cs = containers(ax)
    assert len(cs) == 3 and len(data_lines(ax)) == 3
    assert vlines_x(ax) == pytest.approx(sorted(1 / np.array(betas) ** 2))
    for c, ln in zip(cs, data_lines(ax)):
        assert matplotlib.colors.same_color(c.lines[0].get_color(), ln.get_color())
    _, y = cs[1].lines[0].get_data()
    np.testing.assert_allclose(y, ds["Q"].sel(beta=1.5).mean("seed").values)
    assert ax.get_ylabel() == plots.LABELS["Q"] and ax.get_xscale() == "log"
    texts = legend_texts(ax)
    assert [t for t in texts if "beta =" in t] == [r"$\beta = 0.8$", r"$\beta = 1.5$", r"$\beta = 3$"]
    assert any("gamma_c" in t for t in texts)
    # one beta from the spec, no beta dim; and power-law data: no BBP lines, no legend key
    one = make_scan(rng, spec={"data": {"kind": "Spiked", "beta": [2.0]}})
    assert vlines_x(plots.latent_recovery(one).axes[0]) == pytest.approx([0.25])
    pl = make_scan(rng, lead=("beta", betas), spec={"data": {"kind": "PowerLaw", "beta": [1.0]}})
    ax_pl = plots.latent_recovery(pl).axes[0]
    assert vlines_x(ax_pl) == [] and not any("gamma_c" in t for t in legend_texts(ax_pl))
    assert len(containers(ax_pl)) == 3


def test_powerlaw_curves_per_alpha(rng):
    alphas = [0.5, 1.0]
    ds = make_scan(rng, lead=("alpha", alphas), theory=True)
    fig = plots.powerlaw_curves(ds, var="q", lam=0.1)
    ax = fig.axes[0]
    assert len(containers(ax)) == 2 and len(data_lines(ax)) == 2
    _, y = containers(ax)[0].lines[0].get_data()
    np.testing.assert_allclose(y, ds["q"].sel(alpha=0.5, lam=0.1).mean("seed").values)
    _, yt = data_lines(ax)[1].get_data()
    np.testing.assert_allclose(yt, ds["q_theory"].sel(alpha=1.0, lam=0.1).values)
    assert vlines_x(ax) == []
    assert ax.get_ylabel() == plots.LABELS["q"]
    assert sum("alpha" in t for t in legend_texts(ax)) == 2
    with pytest.raises(ValueError, match="lam"):
        plots.powerlaw_curves(ds, lam=0.3)


# ------------------------------------------------------------------------ spectrum


def test_spectrum_histogram_mp_and_outlier(rng):
    d, gamma, beta = 300, 2.0, 2.0
    n = int(gamma * d)
    X = rng.standard_normal((n, d))
    X[:, 0] *= np.sqrt(1 + beta)
    evals = np.linalg.eigvalsh(X.T @ X / n)
    fig = plots.spectrum(evals, gamma, beta=beta)
    ax = fig.axes[0]
    loc = (1 + beta) * (1 + 1 / (gamma * beta))
    assert vlines_x(ax) == pytest.approx([loc])
    assert abs(evals.max() - loc) < 0.5  # the drawn line is where the outlier is
    (patch,) = [p for p in ax.patches if isinstance(p, matplotlib.patches.StepPatch)]
    heights, edges = patch.get_data()[:2]
    assert np.sum(heights * np.diff(edges)) == pytest.approx(1.0)
    (mp,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    c = 1 / gamma  # the MP law by hand, independent of memgen.theory
    a, b = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    s = mp.get_xdata()
    want = np.where((s > a) & (s < b), np.sqrt(np.clip((b - s) * (s - a), 0, None)) / (2 * np.pi * c * s), 0)
    np.testing.assert_allclose(mp.get_ydata(), want, rtol=1e-6, atol=1e-9)
    assert "eigenvalue" in ax.get_xlabel() and legend_texts(ax)
    # below threshold (gamma beta^2 < 1): no outlier line; gamma < 1 atom left out of histogram
    ev = np.concatenate([np.zeros(100), evals[:200]])
    ax2 = plots.spectrum(ev, 0.5, beta=0.5).axes[0]
    assert vlines_x(ax2) == []
    (patch2,) = [p for p in ax2.patches if isinstance(p, matplotlib.patches.StepPatch)]
    h2, e2 = patch2.get_data()[:2]
    assert np.sum(h2 * np.diff(e2)) == pytest.approx(200 / 300)


# -------------------------------------------------------------------- images, bench


def test_sample_grid(rng):
    train = rng.standard_normal((4, 8, 8))
    a, b = rng.standard_normal((2, 8, 8)), rng.standard_normal((2, 8, 8))
    fig = plots.sample_grid(train, a, b, titles=("train", "A", "B"))
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4 + 2 + 2
    assert [fig.axes[i * 4].get_ylabel() for i in range(3)] == ["train", "A", "B"]
    np.testing.assert_array_equal(fig.axes[4].get_images()[0].get_array(), a[0])
    assert len({im.get_clim() for im in images}) == 1  # one shared intensity range
    assert len(plots.sample_grid(train, a[0], b[0]).axes) == 3 * 4
    with pytest.raises(ValueError, match="H, W"):
        plots.sample_grid(train, rng.standard_normal((2, 4, 4)), b)


def test_bench_scaling_slopes():
    d = np.array([100, 200, 400, 800])
    fig = plots.bench_scaling({"eigh": (d, 1e-9 * d**3.0), "gram": (d, 1e-6 * d**1.5), "one": ([100], [1.0])})
    ax = fig.axes[0]
    assert legend_texts(ax) == ["eigh (slope 3.00)", "gram (slope 1.50)", "one"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.get_lines()) == 3 and "d" in ax.get_xlabel()


def test_save_png_pdf(tmp_path, rng):
    fig = plots.order_parameters(make_scan(rng))
    paths = plots.save(fig, tmp_path / "sub" / "fig1")
    assert [p.name for p in paths] == ["fig1.png", "fig1.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert plots.save(fig, tmp_path / "x.png")[1].name == "x.pdf"
    for f in (plots.phase_diagram(make_scan(rng), "q"), plots.spectrum(np.ones(10), 2.0),
              plots.sample_grid(np.zeros((1, 4, 4)), np.zeros((4, 4)), np.zeros((4, 4)))):
        for p in plots.save(f, tmp_path / "g"):
            assert p.stat().st_size > 0


def test_study_is_the_scan_at_a_glance():
    """m, q, Q against gamma and the q phase diagram, titled with what was scanned."""
    import json

    import memgen

    ds = memgen.scan(memgen.Spiked(d=16, beta=2.0), memgen.Linear(samples=3),
                     memgen.Grid(gamma=[0.25, 1.0, 4.0], lam=[0.0, 0.1], seeds=2), progress=False, theory=True)
    fig = plots.study(ds)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("memorisation" in t for t in labels) and any("latent recovery" in t for t in labels)
    assert any("regularisation" in t for t in labels)  # the phase diagram
    title = fig._suptitle.get_text()
    assert "d = 16" in title and "2 seeds" in title and "theory" in title
    assert json.loads(ds.attrs["memgen_spec"])["data"]["kind"] in title


def test_order_parameters_draw_the_perfect_model_baseline(rng):
    """Denoisers have no theory of m: their held-out baseline is drawn instead, one dotted line per lam."""
    ds = make_scan(rng)
    ds["m_heldout"] = ds["m"] * 0.5
    axm = plots.order_parameters(ds).axes[0]
    dotted = [ln for ln in axm.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata()) > 2]
    assert len(dotted) == len(LAM) and "perfect-model baseline" in legend_texts(axm)
    np.testing.assert_allclose(sorted(dotted[0].get_ydata()),
                               sorted(ds["m_heldout"].mean("seed").sel(lam=LAM[0]).values))
    plain = plots.order_parameters(make_scan(rng)).axes[0]  # negative control: nothing to draw
    assert not [ln for ln in plain.get_lines() if ln.get_linestyle() == ":"]
    ds["Q_heldout"] = ds["Q"] * 0 + 0.9  # Q's baseline goes on the Q panel, and only there
    axes = plots.order_parameters(ds, variables=("m", "q", "Q")).axes
    dotted = [[ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata()) > 2] for ax in axes]
    assert [len(v) for v in dotted] == [len(LAM), 0, 1] and np.allclose(dotted[2][0].get_ydata(), 0.9)
    ds["q_linear"] = ds["q"] * 0 + 0.3  # q's linear-model reference: dash-dotted, on the q panel only
    axes = plots.order_parameters(ds, variables=("m", "q", "Q")).axes
    dashdot = [[ln for ln in ax.get_lines() if ln.get_linestyle() == "-." and len(ln.get_xdata()) > 2] for ax in axes]
    assert [len(v) for v in dashdot] == [0, len(LAM), 0] and np.allclose(dashdot[1][0].get_ydata(), 0.3)
    assert "linear model, same data" in legend_texts(axes[1]) + legend_texts(axes[0])


def test_describe_names_the_scan(rng):
    spec = {"data": {"kind": "Spiked", "d": 300, "beta": [2.0]}, "model": {"kind": "LinearDiffusion",
            "sampler": "ddim", "steps": 10, "schedule": "ve", "flow_time": None}}
    ds = make_scan(rng, spec=spec, lead=("beta", [1.0, 4.0]))
    text = plots.describe(ds.sel(beta=4.0))
    assert text.startswith("LinearDiffusion (ddim, 10 VE steps) on Spiked (") and "beta = 4.0" in text
    assert "d = 300" in text and "4 seeds" in text
