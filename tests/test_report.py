"""What a scan tells the terminal: the text summary it ends with (crossings located where they
are, and said as such) and the progress bar's unit."""

import numpy as np
import xarray as xr

from memgen.report import crossing, summary


def test_crossing_log_interpolates_and_says_when_out_of_range():
    g = np.array([0.1, 1.0, 10.0])
    assert crossing(g, np.array([0.0, 0.4, 0.6]), 0.5) == f"{np.sqrt(10.0):.3g}"  # halfway in log gamma
    assert crossing(g, np.array([0.6, 0.7, 0.8]), 0.5) == "<= 0.1"
    assert crossing(g, np.array([0.1, 0.2, 0.3]), 0.5) == "> 10"
    assert crossing(g, np.array([np.nan, 0.2, 0.9]), 0.5) == f"{np.exp(np.log(1) + 3 / 7 * np.log(10)):.3g}"


def test_summary_reads_a_scan():
    gamma, lam, seed = [0.25, 1.0, 4.0], [0.0, 0.1], [0, 1]
    q = np.broadcast_to(np.array([0.2, 0.5, 0.9])[:, None, None], (3, 2, 2))
    m = np.broadcast_to(np.array([0.9, 0.6, 0.4])[:, None, None], (3, 2, 2))
    Q = np.broadcast_to(np.array([0.0, 0.8, 0.9])[:, None], (3, 2))
    ds = xr.Dataset({"q": (("gamma", "lam", "seed"), q), "m": (("gamma", "lam", "seed"), m),
                     "Q": (("gamma", "seed"), Q)}, coords={"gamma": gamma, "lam": lam, "seed": seed},
                    attrs={"memgen_spec": '{"data": {"kind": "Spiked", "beta": [2.0]}}'})
    text = summary(ds)
    rows = text.splitlines()
    assert rows[1].split() == ["0", "1", f"{np.exp(np.log(0.25) + 0.625 * np.log(4)):.3g}", "0.900", "0.400"]
    assert "gamma_c = 1/beta^2: 0.25 (beta = 2)" in rows[-1]


def test_denoiser_summary_rows_are_means_and_sems_per_load():
    gamma, lam, seed = [4.0, 1 / 64], [0.0], [0, 1]  # unsorted gamma: rows come out by load
    dims = ("gamma", "lam", "seed")

    def var(a, b):  # seeds a, b at gamma = 4, and 1 - a, 1 - b at gamma = 1/64
        return dims, np.array([[[a, b]], [[1 - a, 1 - b]]])
    ds = xr.Dataset({"m": var(0.4, 0.6), "m_heldout": var(0.5, 0.5), "q": var(0.9, 0.7), "q_linear": var(0.2, 0.4),
                     "Q_jac": var(0.8, 0.8),
                     "Q_jac_heldout": var(1.0, 1.0)},
                    coords={"gamma": gamma, "lam": lam, "seed": seed, "n": ("gamma", [256, 1])})
    rows = summary(ds).splitlines()
    assert rows[0].split() == ["gamma", "n", "m", "m_heldout", "q", "q_linear", "Q_jac"]
    assert rows[1].split() == ["0.0156", "1", "0.500", "±", "0.100", "0.500", "0.200", "±", "0.100", "0.700",
                               "0.200", "±", "0.000"]
    assert rows[2].split()[:5] == ["4", "256", "0.500", "±", "0.100"] and "memorising" in rows[3]


def test_progress_counts_grid_values(capsys):
    """The bar counts (gamma, lam, seed) values, not engine points (a point serves every lam)."""
    import memgen

    memgen.scan(memgen.Spiked(d=8), memgen.Linear(samples=2), memgen.Grid(gamma=[1.0], lam=[0.0, 0.1, 1.0], seeds=2),
                progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "values" in err, err
