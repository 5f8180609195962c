"""The one runner: compile an engine's kernel per bucket, run chunks, check, report progress.

Ctrl-C stops within a fraction of a second, between chunks or inside one (``wait``); the
caller has stored every chunk yielded before it.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from typing import Callable, Hashable, Iterator

import jax
import numpy as np

from ..schema import VARS
from .batching import gather, pad, sharded_map
from .device import blas_threads
from .plan import Chunk, for_devices


@functools.lru_cache(maxsize=64)
def compiled(kind: type, static: Hashable, bucket: Hashable, batch: int, devices: tuple) -> Callable:
    """The chunk kernel of engine class ``kind``: cached across scans, keyed by what it closes over."""
    return sharded_map(kind.kernel(static, bucket), batch=batch, devices=devices)


_INTERRUPTED = threading.Event()  # set by the SIGINT handler of ``interruptible``


@contextlib.contextmanager
def interruptible():
    """Ctrl-C as a flag, acted on at safe points (``wait``, between chunks), never lost.

    Python raises KeyboardInterrupt wherever the main thread happens to be; inside a garbage
    collector callback (jax has one) it is printed as "Exception ignored" and dropped, and the
    scan ran on. Here the handler only sets a flag; ``wait`` and ``check_interrupt`` raise
    KeyboardInterrupt from ordinary code. Outside the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _INTERRUPTED.set())
    try:
        yield
        check_interrupt()
    finally:
        signal.signal(signal.SIGINT, previous)
        _INTERRUPTED.clear()


_STOP: list = []  # an exception another thread asks the main thread to raise (``stop``)


def stop(error: BaseException | None) -> None:
    """Makes the next ``check_interrupt`` (within ``wait``'s poll, also inside a chunk or a
    compile) raise ``error``; None withdraws it. For a watcher thread: a distributed scan
    stops every process when one fails (``memgen.run.multihost``)."""
    _STOP[:] = [] if error is None else [error]


def _pending() -> bool:
    """Whether ``check_interrupt`` would raise."""
    return bool(_STOP) or _INTERRUPTED.is_set()


def check_interrupt() -> None:
    """Raises KeyboardInterrupt if Ctrl-C came since ``interruptible`` began (or what ``stop`` set)."""
    if _STOP:
        raise _STOP.pop()
    if _INTERRUPTED.is_set():
        _INTERRUPTED.clear()
        raise KeyboardInterrupt


def interruptibly(fn: Callable, *args, poll: float = 0.05):
    """``fn(*args)`` in a daemon thread while this one polls for Ctrl-C.

    For calls that block inside C++ for seconds (compiling a kernel): Ctrl-C then stops the
    scan within ``poll`` seconds instead of after the call; the abandoned thread dies with the
    process (the CLI exits with ``os._exit``).
    """
    box: dict = {}

    def target():
        try:
            box["out"] = fn(*args)
        except BaseException as e:  # noqa: BLE001  re-raised in the caller's thread
            box["err"] = e

    thread = threading.Thread(target=target, daemon=True, name="memgen-compile")
    thread.start()
    while thread.is_alive():
        check_interrupt()
        thread.join(poll)
    check_interrupt()
    if "err" in box:
        raise box["err"]
    return box["out"]


def wait(tree, poll: float = 0.05, tick: Callable[[], None] | None = None, every: float = 1.0):
    """``block_until_ready`` that Ctrl-C can interrupt.

    A thread blocked inside XLA never returns to Python, so a SIGINT would wait for the whole
    chunk (minutes for denoisers). The blocking wait runs in a daemon thread instead, and this
    one waits on its event ``poll`` seconds at a time, raising the KeyboardInterrupt within
    ``poll`` while the results are not ready; the chunk in flight is abandoned. Results that are
    ready are returned even when Ctrl-C came (the next ``check_interrupt``, between chunks,
    raises it), so that a finished chunk is still stored. The event is set the moment the
    results are ready: polling ``is_ready`` with sleeps of a tenth of the time waited saw them
    up to ~10% late (4 ms of each 44 ms chunk of the quick bench). ``tick`` is called about
    every ``every`` seconds while waiting (the progress bar's clock, on chunks of minutes). An
    error of the computation is not raised here but where the results are read (``gather``).
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if all(x.is_ready() for x in leaves):
        return tree
    ready = threading.Event()

    def block():
        try:
            jax.block_until_ready(leaves)
        except Exception:  # noqa: BLE001  raised again where the results are read
            pass
        finally:
            ready.set()

    threading.Thread(target=block, daemon=True, name="memgen-wait").start()
    last = time.perf_counter()
    while not ready.wait(min(poll, every) if tick is not None else poll):
        check_interrupt()
        now = time.perf_counter()
        if tick is not None and now - last >= every:
            tick()
            last = now
    return tree


def _at_highest(fn: Callable, *args):
    """``fn(*args)`` with matmuls lowered at precision "highest" (the TF32/bf16 defaults of GPUs
    and TPUs would bias cosines). Set in the thread that lowers: the setting is thread-local,
    so set around ``interruptibly`` it missed the compile thread (kernels had the default)."""
    with jax.default_matmul_precision("highest"):
        return fn(*args)


class Runner:
    """Runs chunks of one engine's points on every local device (this process's own, also when
    JAX runs several processes: ``memgen.run.multihost``).

    Each compiled call evaluates points in fixed micro-batches per device (``sharded_map``),
    so results are bit-identical for any chunk size, device count or resume history.
    """

    def __init__(self, engine, devices: tuple | None = None):
        self.engine = engine
        self.devices = tuple(jax.local_devices()) if devices is None else tuple(devices)
        self.placement: dict[Hashable, tuple] = {}  # bucket -> its devices, where not all (``place``)
        self.compiled_buckets: set = set()  # buckets whose kernel ``compile`` has seen ready (``eta``)
        self._shared = None
        self.compile_seconds = 0.0
        self.compute_seconds = 0.0
        self.tick: Callable[[], None] | None = None  # called ~every second while a chunk computes
        self._collected = 0.0  # when the last chunk was collected

    def shared(self):
        """The engine's replicated inputs, built and copied to every device once."""
        if self._shared is None:
            mesh = jax.sharding.Mesh(np.array(self.devices), ("points",))
            everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            self._shared = jax.device_put(self.engine.shared(), everywhere)
        return self._shared

    def place(self, chunks: list[Chunk]) -> None:
        """Gives a bucket with fewer units than micro-batch slots on the devices (``batch`` per
        device) only as many devices as it fills, taken round-robin after the previous such
        bucket's. Such buckets then compute side by side, each on its own devices, instead of
        one after the other with the other devices computing padding copies (d = 2048 with one
        seed: a Gram bucket and a covariance bucket of one unit each). Same numbers: a unit's
        arithmetic does not depend on how many devices share a chunk (``sharded_map``)."""
        units: dict[Hashable, int] = {}
        batch: dict[Hashable, int] = {}
        for c in chunks:
            units[c.bucket] = units.get(c.bucket, 0) + len(c.units())
            batch[c.bucket] = c.batch
        self.placement, free = {}, 0
        for bucket, u in units.items():
            k = -(-u // batch[bucket])  # devices its units fill
            if k < len(self.devices):
                self.placement[bucket] = tuple(self.devices[(free + j) % len(self.devices)] for j in range(k))
                free += k

    def _kernel(self, chunk: Chunk) -> tuple[Callable, Chunk]:
        """``chunk``'s compiled kernel on its bucket's devices, and the chunk padded for them."""
        e = self.engine
        devices = self.placement.get(chunk.bucket, self.devices)
        if len(devices) != len(self.devices):
            chunk = for_devices(chunk, len(devices))
        return compiled(type(e), e.static(), chunk.bucket, chunk.batch, devices), chunk

    def ready(self, chunk: Chunk) -> bool:
        """Whether ``chunk``'s kernel is compiled already (``dispatch`` then returns at once)."""
        fn, chunk = self._kernel(chunk)
        return fn.compiled(self.engine.inputs(pad(chunk.units()[:1], fn.step)), self.shared())

    def compile(self, chunk: Chunk) -> None:
        """Compiles ``chunk``'s kernel if need be, timed apart (into ``compile_seconds``), in a
        thread that Ctrl-C does not wait for."""
        fn, padded = self._kernel(chunk)
        per = self.engine.inputs(pad(padded.units()[:1], fn.step))
        if not fn.compiled(per, self.shared()):
            self.compile_seconds += interruptibly(_at_highest, fn.compile, per, self.shared())
        self.compiled_buckets.add(chunk.bucket)

    def dispatch(self, chunk: Chunk) -> tuple:
        """Starts one chunk: compiles its bucket's kernel if need be (``compile``), then
        dispatches every micro-step without waiting for any. Returns what ``collect`` takes.
        The BLAS setting (``blas_threads``) must hold until then."""
        self.compile(chunk)
        fn, padded = self._kernel(chunk)
        per = self.engine.inputs(pad(chunk.units(), padded.size))
        return chunk, fn(per, self.shared()), time.perf_counter()

    def collect(self, flight: tuple) -> dict[str, np.ndarray]:
        """A dispatched chunk's results: host arrays with the padding removed, checked finite.

        ``compute_seconds`` grows by the time since the later of its dispatch and the previous
        collect: the wall time of computing, also when chunks overlap (``run_chunks``).
        """
        chunk, outs, t0 = flight
        out = gather(wait(outs, tick=self.tick))
        if chunk.unit is not None:  # [units, unit, ...] -> [points, ...], in ``index``'s order
            out = {k: v.reshape((-1,) + v.shape[2:]) for k, v in out.items()}
        out = {k: v[: len(chunk.index)] for k, v in out.items()}
        now = time.perf_counter()
        self.compute_seconds += now - max(t0, self._collected)
        self._collected = now
        check_finite(self.engine, chunk.index, out)
        return out

    def run(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """One chunk, start to finish (``dispatch`` then ``collect``)."""
        with blas_threads(self.devices):
            return self.collect(self.dispatch(chunk))


def check_finite(engine, index: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """Raises FloatingPointError naming the variable and the coordinates of its first non-finite value.

    +inf passes for variables that declare it (``schema.Var.infinite``: a divergence to a
    singular law); NaN and -inf never do.
    """
    for name, v in out.items():
        bad = ~np.isfinite(v)
        if name in VARS and VARS[name].infinite:
            bad &= ~np.isposinf(v)
        if not bad.any():
            continue
        row = np.argwhere(bad)[0]
        place = np.unravel_index(index[row[0]], [len(vals) for _, vals in engine.axes])
        where = [f"{a}={vals[i]}" for (a, vals), i in zip(engine.axes, place)]
        where += [f"{dim}={engine.coords[dim][j]}" for dim, j in zip(engine.variables[name], row[1:])]
        raise FloatingPointError(f"non-finite {name} at {', '.join(where)}; rerun with JAX_DEBUG_NANS=1 to find "
                                 "its source")


def _cost(engine, chunk: Chunk) -> float:
    """Relative compute cost of a chunk: points x the memory model's bytes per point."""
    return chunk.size * engine.point_bytes(chunk.bucket, 4)


def eta(runner: Runner, done: list[Chunk], todo: list[Chunk]) -> float | None:
    """Seconds left: compute at the cost rate measured so far (compiling excluded), plus one
    compile, at the mean compile time so far, per bucket whose kernel is not compiled yet
    (``Runner.compiled_buckets``: ``run_chunks`` compiles them all first, so normally none).
    None before any data."""
    if not done or runner.compute_seconds <= 0:
        return None
    e = runner.engine
    rate = runner.compute_seconds / sum(_cost(e, c) for c in done)
    known = runner.compiled_buckets
    new = {c.bucket for c in todo} - known
    return rate * sum(_cost(e, c) for c in todo) + len(new) * runner.compile_seconds / max(len(known), 1)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:02d}:{s:02d}"


def run_chunks(runner: Runner, chunks: list[Chunk], progress: bool = True,
               desc: str = "memgen scan") -> Iterator[tuple[Chunk, dict]]:
    """Runs chunks in order, yielding results as they complete, with a progress bar.

    Every bucket's kernel is compiled first (``Runner.compile``), and buckets with fewer units
    than the devices have slots get devices of their own (``Runner.place``). Chunk i + 1 is
    then dispatched before chunk i is awaited, so the devices never idle while the host
    gathers, checks and stores a chunk (about 8 ms a chunk, a tenth of the quick bench), and
    small buckets on different devices compute at the same time; a chunk whose kernel is not
    compiled (none, unless a kernel was dropped from the cache meanwhile, or failed to
    compile: it is tried again when its chunk comes, after the chunks before it are stored)
    waits for chunk i to be collected, so that no finished chunk waits through a compile
    unstored. Neither Ctrl-C nor a
    failed dispatch drops a finished chunk: it is yielded first (a chunk still computing is
    abandoned). Two chunks in flight hold two chunks' inputs and outputs; their temporaries
    do not add up, since a device runs its programs one at a time.

    The bar counts grid values (combinations of the grid's axes, e.g. gamma x lam x seed), the
    unit the user asked for, whatever a point of the engine covers. Its ETA (``eta``) keeps
    compiling apart from computing, so it is honest from the first chunk on; the time spent
    compiling so far is shown beside it.
    """
    per = runner.engine.values_per_point
    total = sum(len(c.index) for c in chunks) * per
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit=" values", desc=desc, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} values [{elapsed}{postfix}]")
        runner.tick = bar.refresh  # the elapsed clock runs on inside a long chunk

    def collect(i, flight):
        out = runner.collect(flight)
        if bar is not None:
            left = eta(runner, chunks[: i + 1], chunks[i + 1:])
            bar.set_postfix_str(("" if left is None else f"ETA {_clock(left)}, ")
                                + f"compiling {runner.compile_seconds:.0f} s so far", refresh=False)
            bar.update(len(chunks[i].index) * per)
        return chunks[i], out

    try:
        with blas_threads(runner.devices):  # held while any chunk computes
            runner.place(chunks)
            firsts: dict = {}
            for c in chunks:
                firsts.setdefault(c.bucket, c)
            # (no more than the kernel cache holds: a kernel compiled first would be evicted
            # before its chunks ran; the buckets beyond compile on the way, as they come)
            todo = [c for c in firsts.values() if not runner.ready(c)][:compiled.cache_info().maxsize]
            for j, c in enumerate(todo, 1):
                if bar is not None:
                    bar.set_postfix_str(f"compiling kernel {j} of {len(todo)}, {runner.compile_seconds:.0f} s so far")
                try:
                    runner.compile(c)
                except Exception:  # noqa: BLE001  raised again when its chunk comes, the chunks before it stored
                    break
            flight = None  # (index, dispatched chunk) not collected yet
            for i, c in enumerate(chunks):
                if flight is not None and (_pending() or not runner.ready(c)):
                    yield collect(*flight)  # stored if finished; Ctrl-C raises here if not
                    flight = None
                check_interrupt()
                try:
                    nxt = (i, runner.dispatch(c))
                except BaseException:
                    if flight is not None:  # the chunk before a failed dispatch is still stored
                        yield collect(*flight)
                    raise
                if flight is not None:
                    yield collect(*flight)
                flight = nxt
            if flight is not None:
                yield collect(*flight)
    finally:
        if bar is not None:
            runner.tick = None
            bar.close()
