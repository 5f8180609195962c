"""Many hosts on JAX's own runtime: the processes of one scan split its chunks.

Contract: host-side coordination only, no kernels. Grid points are independent and a
point's arithmetic depends only on the micro-batch, so no process ever needs another's
numbers: each runs the chunks assigned to it (``assign``, a function of the plan alone) on
its OWN local devices and writes its own chunk files into the one shared store. The
processes agree through the key-value store of JAX's coordination service, the one
``jax.distributed.initialize`` starts on process 0: a session token, barriers, and a
failure flag that stops every process with the message of the one that failed. No
cross-process collective is compiled, so nothing here depends on the CPU collectives
(gloo) or on an interconnect.

A process that dies without a word (SIGKILL, a lost host) is JAX's to detect: the
coordination service stops the others when its heartbeats stop (``heartbeat_timeout``,
100 s by default). Every finished chunk is on disk; ``--resume`` finishes the store, with
any number of processes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import time
import uuid

import jax
import numpy as np

from . import loop

# The environment variables of ``memgen scan --coordinator/--num-processes/--process-id``.
ENV = {"coordinator": "MEMGEN_COORDINATOR", "num_processes": "MEMGEN_NUM_PROCESSES",
       "process_id": "MEMGEN_PROCESS_ID"}
_OPTION = {"coordinator": "--coordinator", "num_processes": "--num-processes", "process_id": "--process-id"}
_SCANS = itertools.count()  # every process numbers its scans alike: the key space of each scan


def parse_coordinator(text, name: str = "--coordinator") -> str:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``), checked; ValueError naming ``name``."""
    s = str(text).strip()
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})", s)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise ValueError(f"{name} must be HOST:PORT with a port in 1..65535 (process 0's address, "
                         f"e.g. 10.0.0.1:12355), got {str(text)!r}")
    return s


def _integer(name: str, value, low: int, high: int | None) -> int:
    try:
        v = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        v = None
    if v is None or v < low or (high is not None and v > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return v


def check(coordinator=None, num_processes=None, process_id=None, *, env=None) -> tuple | None:
    """The three options of a distributed scan, each from its argument or else its environment
    variable (``ENV``); None when none is given. ValueError naming what is wrong or missing.

    Returns:
        ``(coordinator, num_processes, process_id)``, checked.
    """
    env = os.environ if env is None else env
    given = dict(coordinator=coordinator, num_processes=num_processes, process_id=process_id)
    name = dict(_OPTION)  # what the messages call each value: the option, or the variable it came from
    for k, v in given.items():
        if v is None and env.get(ENV[k], "").strip():
            given[k], name[k] = env[ENV[k]], f"${ENV[k]}"
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == 3:
        return None
    if missing:
        have = ", ".join(name[k] for k in given if k not in missing)
        need = ", ".join(f"{_OPTION[k]} (or ${ENV[k]})" for k in missing)
        raise ValueError(f"a scan over several processes needs --coordinator, --num-processes and --process-id "
                         f"together: {have} given, {need} missing")
    address = parse_coordinator(given["coordinator"], name["coordinator"])
    count = _integer(name["num_processes"], given["num_processes"], 1, None)
    rank = _integer(name["process_id"], given["process_id"], 0, count - 1)
    return address, count, rank


def initialize(coordinator: str, num_processes: int, process_id: int, *, timeout: int = 300) -> None:
    """``jax.distributed.initialize`` for a scan over ``num_processes`` processes, checked first.

    For a program's start, before any JAX computation (the CLI calls it). One process changes
    nothing: there is no runtime to start. CPU processes need no extra configuration: no
    collective crosses processes (JAX's default CPU collectives, gloo, are never used).

    Raises:
        ValueError: bad options, JAX already started, or no runtime within ``timeout``
            seconds (e.g. a process that never came).
    """
    coordinator, num_processes, process_id = check(coordinator, num_processes, process_id, env={})
    if num_processes == 1:
        return
    if jax.distributed.is_initialized():
        if (jax.process_count(), jax.process_index()) != (num_processes, process_id):
            raise ValueError(f"--num-processes {num_processes} --process-id {process_id}: JAX's distributed runtime "
                             f"already runs as process {jax.process_index()} of {jax.process_count()}")
        return
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout)
    except Exception as e:  # noqa: BLE001  JaxRuntimeError, RuntimeError: one line for the CLI
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"--coordinator {coordinator}: could not join the distributed runtime as process "
                         f"{process_id} of {num_processes} ({first})") from None


def _client():
    """The coordination service's client of this process (JAX has no public handle for it)."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("JAX's distributed runtime reports several processes but has no client")
    return client


class ProcessFailed(RuntimeError):
    """Another process of the scan stopped with an error (its message is this one's)."""


class Session:
    """The processes of one scan: process ``rank`` of ``size``, speaking through JAX's
    key-value store under a key space of its own (``memgen/scan<k>/``, ``k`` counting the
    scans of this program, alike in every process).

    Every process of the runtime must call the scan with the same arguments, in the same
    order; the store directory must be one they all see (a shared filesystem).
    """

    def __init__(self, poll: float = 0.05):
        self.rank, self.size = jax.process_index(), jax.process_count()
        self.prefix = f"memgen/scan{next(_SCANS)}/"
        self.poll = poll
        self.client = _client()

    # ----------------------------------------------------------- key-value primitives
    def publish(self, key: str, value) -> None:
        self.client.key_value_set(self.prefix + key, json.dumps(value))

    def _try(self, key: str):
        try:
            return json.loads(self.client.key_value_try_get(self.prefix + key))
        except Exception as e:  # noqa: BLE001  NOT_FOUND is a JaxRuntimeError like any other
            if "NOT_FOUND" in str(e) or "not found" in str(e):
                return None
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ProcessFailed(f"process {self.rank} of {self.size} lost JAX's coordination service (process "
                                f"0 gone?): {first}") from None

    def check(self) -> None:
        """Raises ProcessFailed if any other process of this scan has failed (``fail``)."""
        failed = self._try("failed")
        if failed is not None and failed["rank"] != self.rank:
            raise ProcessFailed(f"process {failed['rank']} of {self.size} stopped: {failed['message']}")

    def fail(self, message: str) -> None:
        """Tells the other processes that this one stops (the first failure wins)."""
        try:
            self.publish("failed", {"rank": self.rank, "message": message})
        except Exception:  # noqa: BLE001  already set by another process, or the service is gone
            pass

    def wait(self, key: str):
        """The value at ``key`` once some process has published it; stops on a failure or Ctrl-C."""
        while True:
            value = self._try(key)
            if value is not None:
                return value
            self.check()
            loop.check_interrupt()
            time.sleep(self.poll)

    def barrier(self, name: str) -> None:
        """Returns once every process has reached ``barrier(name)``; stops on a failure or Ctrl-C."""
        self.publish(f"{name}/{self.rank}", 1)
        while len(self.client.key_value_dir_get(f"{self.prefix}{name}/")) < self.size:
            self.check()
            loop.check_interrupt()
            time.sleep(self.poll)


    def _watch(self, done: threading.Event) -> None:
        """Watcher thread: another process's failure stops this one's main thread at its next
        ``loop.check_interrupt`` (within a poll, also inside a chunk or a compile)."""
        while not done.wait(4 * self.poll):
            try:
                self.check()
            except ProcessFailed as e:
                loop.stop(e)
                return


@contextlib.contextmanager
def session():
    """A ``Session`` when JAX runs several processes, else None. Inside the block a watcher
    thread stops this process soon after another fails; an exception inside the block is
    published (``Session.fail``) before it propagates, so that no other process waits for
    this one: every process stops within a second, each with one line."""
    if jax.process_count() == 1:
        yield None
        return
    s = Session()
    done = threading.Event()
    watcher = threading.Thread(target=s._watch, args=(done,), daemon=True, name="memgen-watch")
    watcher.start()
    try:
        yield s
    except ProcessFailed:
        raise
    except KeyboardInterrupt:
        s.fail("interrupted (Ctrl-C)")
        raise
    except BaseException as e:
        s.fail(" ".join(str(e).splitlines()) or type(e).__name__)
        raise
    finally:
        done.set()
        watcher.join()
        loop.stop(None)


def shutdown() -> None:
    """Leaves JAX's distributed runtime now, if it runs (for a program about to ``os._exit``,
    which skips JAX's own ``atexit`` shutdown: without it the others would wait for this
    process until the runtime's heartbeat timeout)."""
    if jax.distributed.is_initialized():
        try:
            jax.distributed.shutdown()
        except Exception:  # noqa: BLE001  the others are gone already: nothing left to leave
            pass


def new_token() -> str:
    """A session token: random, made once by process 0 and published to the others."""
    return uuid.uuid4().hex


def local_counts() -> list[int]:
    """Local device count of every process, from the global device list (the same everywhere)."""
    counts = np.bincount([d.process_index for d in jax.devices()], minlength=jax.process_count())
    return [int(c) for c in counts]


def assign(costs, weights) -> np.ndarray:
    """The process of each chunk: contiguous runs of the plan, of cost proportional to ``weights``.

    Chunk ``k`` goes to the process whose share of the total cost holds the midpoint of ``k``'s
    cost in the running sum. A function of the plan alone, so every process computes the same
    assignment; contiguous, so a process meets few of the plan's buckets (compiles), which the
    plan lists one after the other; balanced to within one chunk.

    Args:
        costs: relative cost of each chunk [chunks], in plan order.
        weights: relative speed of each process [processes] (e.g. its local device count).
    """
    costs = np.asarray(costs, float)
    w = np.asarray(weights, float)
    if costs.size == 0:
        return np.zeros(0, int)
    mid = (np.cumsum(costs) - costs / 2) / costs.sum()
    edges = np.cumsum(w)[:-1] / w.sum()
    return np.searchsorted(edges, mid, side="right")
