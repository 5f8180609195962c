"""Device policy: how many CPU devices, how much memory a device may use, BLAS threads.

Contract: host-side helpers, no kernels. ``memgen.run`` and the CLI are the only callers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax


def use_every_core() -> None:
    """One XLA CPU device per usable core, unless the user chose a count or JAX already started.

    Scans shard their points over every device, so on a CPU this is what puts every core to
    work; results are identical for any device count. It changes nothing on GPU/TPU runs,
    where the CPU is not a compute device. For a program's start (the CLI calls it first).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    try:
        jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))
    except (RuntimeError, AttributeError):  # backend already initialised (in-process use), or no affinity API
        pass


def compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Switches on JAX's persistent compilation cache for this process; returns its folder.

    Compiling dominates small scans (the README's main job: ~19 s of compiling, under 1 s of
    compute on 2 cores); with the cache a second run of the same shapes loads the kernels
    (~3 s). Every kernel is cached, however quick its compile. A process-wide setting: the CLI
    calls it (``--no-cache`` skips it); the library never does on its own.

    Args:
        path: the folder; default ``$MEMGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/memgen/jax``,
            else ``~/.cache/memgen/jax``.
    """
    if path is None:
        path = os.environ.get("MEMGEN_CACHE_DIR") or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memgen" / "jax"
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def default_memory(devices=None) -> int:
    """Memory budget of ONE device in bytes: half the free memory of the first local device
    (accelerators), or half the host RAM shared by the local CPU devices.

    Raises:
        ValueError: an accelerator that does not report its memory (pass ``memory``).
    """
    dev = (devices or jax.local_devices())[0]
    if dev.platform != "cpu":
        st = dev.memory_stats() or {}
        if "bytes_limit" not in st:
            raise ValueError(f"memory: device {dev.platform}:{dev.device_kind} does not report its free memory; "
                             "pass memory= (--memory), e.g. 16GB")
        return int(0.5 * (st["bytes_limit"] - st.get("bytes_in_use", 0)))
    return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / jax.local_device_count())


def blas_threads(devices=None):
    """One OpenBLAS thread while XLA computes on the CPU (a context manager).

    jaxlib's CPU ``eigh`` calls LAPACK from the OpenBLAS that SciPy/NumPy load, from inside
    XLA's own thread pool. OpenBLAS then spins up its threads on cores XLA already occupies:
    measured on a 2-core machine, 16 batched 256 x 256 ``eigh`` took 19 s instead of 0.05 s.
    Decided by the devices the computation runs on, not the process's default backend.
    """
    if (devices or jax.local_devices())[0].platform != "cpu":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
