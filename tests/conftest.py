"""Strict JAX for the suite: x64 available, strict promotion, 4 CPU devices, pinnable keys.

Tests that want float32 pass float32 inputs explicitly; the default-float32 path of the
library is covered by the CLI tests, which run ``memgen`` in a subprocess without x64.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
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


def pytest_report_header(config):
    return f"jax {jax.__version__}, backend {_BACKEND}, devices {jax.device_count()}"
