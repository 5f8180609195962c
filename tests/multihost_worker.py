"""One process of a two-process scan through the library, for tests/test_multihost.py.

    python tests/multihost_worker.py HOST:PORT PROCESS_ID OUT GATE

Starts JAX's distributed runtime, then ``memgen.scan`` with every chunk held back until the
file GATE exists (so that the test can knock on the store while this scan holds it). Prints
``running`` when it reaches its first chunk and ``done <process> <chunks>`` at the end.
"""

import pathlib
import sys
import time

from memgen.run import multihost

multihost.initialize(sys.argv[1], 2, int(sys.argv[2]))

import memgen  # noqa: E402
from memgen.run import device, loop  # noqa: E402

device.compilation_cache()  # $MEMGEN_CACHE_DIR: the test run's own cache
gate = pathlib.Path(sys.argv[4])
real = loop.Runner.dispatch


def gated(self, chunk):
    print("running", flush=True)
    deadline = time.time() + 120  # a test that never opens the gate fails, never hangs
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.05)
    return real(self, chunk)


loop.Runner.dispatch = gated
ds = memgen.scan(memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3),
                 memgen.Grid(gamma=[1.25, 1.5, 2.0], lam=[0.0, 0.1], seeds=2),
                 out=sys.argv[3], chunk=1, batch=2, progress=False)
print("done", ds.attrs["process_index"], ds.attrs["chunks_computed"], int(ds.q.notnull().all()), flush=True)
