"""Simulation vs exact asymptotics on the same axes (issue: q within 0.02, Q within 0.05)."""

import numpy as np
import pytest

import memgen

pytestmark = pytest.mark.xdist_group("test_scan_theory")  # its module-scoped fixture runs once, on one worker

D_CI = 256


@pytest.fixture(scope="module")
def spiked():
    data = memgen.Spiked(d=D_CI, beta=2.0)
    grid = memgen.Grid(gamma=[0.25, 0.5, 1.0, 2.0, 4.0, 0.12], lam=[0.0, 0.1, 1.0], seeds=4)
    return memgen.scan(data, memgen.Linear(), grid, progress=False), memgen.theory(data, grid)


def test_q_matches_theory(spiked):
    ds, th = spiked
    sim = ds.q.mean("seed").sel(gamma=[0.25, 0.5, 1.0, 2.0, 4.0])
    err = np.abs(sim - th.q.sel(gamma=sim.gamma)).max()
    assert err < 0.02, float(err)
    # negative control: the theory at a 30% wrong load is rejected by the same check
    wrong = memgen.theory(memgen.Spiked(d=D_CI, beta=2.0), memgen.Grid(gamma=list(sim.gamma.values * 1.3), lam=[0.0, 0.1, 1.0]))
    assert np.abs(sim.values - wrong.q.values).max() > 0.02


def test_Q_matches_bbp_away_from_transition(spiked):
    ds, th = spiked
    gamma_c = 1 / 2.0**2
    away = [g for g in ds.gamma.values if abs(g - gamma_c) > 0.3 * gamma_c]
    sim = ds.Q.mean("seed").sel(gamma=away)
    assert np.abs(sim - th.Q.sel(gamma=away)).max() < 0.05
    assert float(ds.Q.mean("seed").sel(gamma=0.12)) < 0.1 and float(th.Q.sel(gamma=0.12)) == 0
    # negative control: BBP with the wrong beta (1.5) is rejected
    wrong = memgen.theory(memgen.Spiked(d=D_CI, beta=1.5), memgen.Grid(gamma=away, lam=[0.0]))
    assert np.abs(sim.values - wrong.Q.values).max() > 0.05


def test_w2_and_top_eig_track_theory(spiked):
    ds, th = spiked
    g = [1.0, 2.0, 4.0]
    assert np.abs(ds.w2.mean("seed").sel(gamma=g) - th.w2.sel(gamma=g)).max() < 0.03
    assert np.abs(ds.top_eig.mean("seed").sel(gamma=g) / th.top_eig.sel(gamma=g) - 1).max() < 0.1
