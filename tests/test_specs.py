"""Every bad input gets one clear ValueError naming the parameter and the allowed range."""

import pytest

import memgen
from memgen import specs


@pytest.mark.parametrize("make,match", [
    (lambda: memgen.Spiked(d=1), r"Spiked.d must be an integer >= 2, got 1"),
    (lambda: memgen.Spiked(d=2.5), r"Spiked.d must be an integer >= 2"),
    (lambda: memgen.Spiked(beta=-1.0), r"Spiked.beta must be > 0, got -1.0"),
    (lambda: memgen.Spiked(beta=[]), r"Spiked.beta must be a non-empty list"),
    (lambda: memgen.Spiked(beta="x"), r"Spiked.beta must be a number or a list of numbers"),
    (lambda: memgen.Spiked(directions="up"), r"Spiked.directions must be 'random' or 'axis'"),
    (lambda: memgen.PowerLaw(alpha=-0.5), r"PowerLaw.alpha must be >= 0, got -0.5"),
    (lambda: memgen.PowerLaw(d=10, k=10), r"PowerLaw.k must be < d=10"),
    (lambda: memgen.Linear(samples=0), r"Linear.samples must be an integer >= 1, got 0"),
    (lambda: memgen.Grid(gamma=[0.0, 1.0]), r"Grid.gamma must be > 0, got 0.0"),
    (lambda: memgen.Grid(gamma=[float("nan")]), r"Grid.gamma must be finite and > 0, got nan"),
    (lambda: memgen.Grid(gamma=[float("inf")]), r"Grid.gamma must be finite and > 0, got inf"),
    (lambda: memgen.Grid(lam=[-0.1]), r"Grid.lam must be >= 0, got -0.1"),
    (lambda: memgen.Grid(lam=[float("inf")]), r"Grid.lam must be finite and >= 0, got inf"),
    (lambda: memgen.Grid(lam=[1e30]), r"Grid.lam must be <= 1e6 \(float32 .*\), got 1e\+30"),
    (lambda: memgen.Grid(beta=[float("inf")]), r"Grid.beta must be finite and > 0, got inf"),
    (lambda: memgen.Grid(alpha=[float("nan")]), r"Grid.alpha must be finite and >= 0, got nan"),
    (lambda: memgen.Spiked(beta=float("inf")), r"Spiked.beta must be finite and > 0, got inf"),
    (lambda: memgen.PowerLaw(alpha=float("inf")), r"PowerLaw.alpha must be finite and >= 0, got inf"),
    (lambda: memgen.Grid(seeds=0), r"Grid.seeds must be an integer >= 1, got 0"),
    (lambda: memgen.Grid(beta=[0.0]), r"Grid.beta must be > 0"),
    (lambda: memgen.Grid(gamma=[1.0, 1.0]), r"Grid.gamma must be a list without repeated values"),
])
def test_spec_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_cross_checks_before_compute():
    with pytest.raises(ValueError, match=r"Grid.gamma must be >= 0.005 so that n = round\(gamma\*d\) >= 1 at d=100"):
        memgen.scan(memgen.Spiked(d=100), memgen.Linear(), memgen.Grid(gamma=[0.001]))
    with pytest.raises(ValueError, match=r"Grid.alpha must be unset unless the data is PowerLaw"):
        memgen.scan(memgen.Spiked(d=10), memgen.Linear(), memgen.Grid(alpha=[1.0]))
    with pytest.raises(ValueError, match=r"Grid.beta must be unset when Grid.alpha is swept"):
        memgen.scan(memgen.PowerLaw(d=10, beta=(2.0,)), memgen.Linear(), memgen.Grid(beta=[1.0, 2.0], alpha=[1.0]))
    with pytest.raises(ValueError, match=r"chunk must be an integer >= 1, got 0"):
        memgen.scan(memgen.Spiked(d=10), memgen.Linear(), memgen.Grid(), chunk=0)
    with pytest.raises(ValueError, match=r"memory must be a positive size such as 4GB"):
        memgen.scan(memgen.Spiked(d=10), memgen.Linear(), memgen.Grid(), memory="lots")


def test_round_trip():
    for spec in (memgen.Spiked(d=7, beta=(3.0, 1.0)), memgen.PowerLaw(alpha=2.0, beta=(1.5,)),
                 memgen.Linear(samples=3), memgen.Grid(gamma=[0.5, 2.0], beta=[1.0, 2.0], seeds=2)):
        assert specs.from_dict(specs.to_dict(spec)) == spec


def test_largest_lam_is_accepted():
    assert memgen.Grid(lam=[0.0, 1e6]).lam == (0.0, 1e6)


@pytest.mark.parametrize("d,match", [
    ({"d": 3}, r"a spec must be a dict with a 'kind' key"),
    ([1], r"a spec must be a dict with a 'kind' key"),
    ({"kind": "Nope"}, r"unknown spec kind 'Nope'"),
    ({"kind": "Spiked", "d": 5, "colour": 1}, r"Spiked: unknown fields \['colour'\]"),
])
def test_from_dict_errors_are_value_errors(d, match):
    with pytest.raises(ValueError, match=match):
        specs.from_dict(d)


def test_image_specs_say_finite():
    with pytest.raises(ValueError, match=r"ImageField.alpha must be finite and >= 0, got inf"):
        memgen.ImageField(size=(8, 8), alpha=float("inf"))
