"""Strict JAX for the suite: x64 available, strict promotion, 4 CPU devices, pinnable keys,
quick compiles (``reference.xla_flags``).

Tests that want float32 pass float32 inputs explicitly; the default-float32 path of the
library is covered by the CLI tests, which run ``memgen`` in a subprocess without x64.
"""

import os
import tempfile
from pathlib import Path

from reference import xla_flags  # noqa: E402 - the suite's XLA flags (one definition, subprocesses too)

os.environ.setdefault("XLA_FLAGS", xla_flags(4))
# One persistent compilation cache per test run, shared by both xdist workers and every `memgen`
# subprocess (the CLI switches the cache on): the same small kernels compile once per run. Never
# the user's own cache, and never one left by an earlier run.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
os.environ["MEMGEN_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"memgen-test-jax-cache-{_RUN}")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# One table of tolerances, keyed by (dtype, backend): kernel vs float64 reference.
_BACKEND = jax.default_backend()
RTOL = {"float64": 1e-10, "float32": 1e-4 if _BACKEND == "cpu" else 1e-3}


@pytest.fixture
def seed(request):
    """A fresh random seed per test, printed on failure, pinned by MEMGEN_TEST_SEED."""
    s = int(os.environ.get("MEMGEN_TEST_SEED", np.random.SeedSequence().entropy % 2**31))
    request.node.user_properties.append(("seed", s))
    print(f"MEMGEN_TEST_SEED={s}")
    return s


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


# Slowest files first (measured with --durations on 2 cores): xdist hands each worker a whole
# file at a time (--dist loadfile, --no-loadscope-reorder), so a long file started last would
# run alone at the end. Only the order changes; every other file keeps its collection order.
SLOWEST_FIRST = ("test_readme.py", "test_denoisers.py", "test_figures.py", "test_cli.py", "test_trust.py",
                 "test_run.py", "test_store.py", "test_diffusion.py", "test_multihost.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept


def pytest_configure(config):
    """Refuse to run when ``--dist loadgroup`` would have no effect: the files marked
    ``xdist_group`` (test_readme's commands build on each other's output) would split across
    workers and fail at random. pytest-xdist (3.8) groups a test by setting its
    ``item._nodeid`` to ``<id>@<group>``, which pytest 9.2.0 no longer reads (its ``nodeid``
    is ``str(self._id)``); pyproject.toml's test extra keeps pytest below 9.2."""
    if getattr(config.option, "dist", None) != "loadgroup" or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import inspect

    import _pytest.nodes
    import xdist.remote

    if ("._nodeid =" in inspect.getsource(xdist.remote)
            and "_nodeid" not in inspect.getsource(_pytest.nodes.Node.nodeid.fget)):
        raise pytest.UsageError(f"pytest-xdist's --dist loadgroup does not work with pytest {pytest.__version__} "
                                "(grouped tests would split across workers): pip install 'pytest<9.2' "
                                "(pip install -e '.[test]' does)")


def pytest_report_header(config):
    return f"jax {jax.__version__}, backend {_BACKEND}, devices {jax.device_count()}"
