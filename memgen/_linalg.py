"""LAPACK calls that are safe inside batched, multi-device CPU kernels.

On the CPU, jaxlib runs a *batched* ``eigh``/``qr`` by splitting the batch over XLA's intra-op
thread pool and blocking a pool thread until the pieces are done (``jax::ParallelBatchMap``).
When several such calls are in flight at once (the two models of a pair, or one call per
device of a sharded chunk) every pool thread can end up blocked: a deadlock with 0% CPU
(seen with jax 0.10.2 on 2 cores). It also buys nothing there: measured, a batch of 256 x 256
``eigh`` costs the same per matrix as one at a time. So under ``vmap`` on the CPU these
wrappers loop (``lax.map``) over single matrices; on GPU/TPU they stay batched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _sequential_on_cpu(fn):
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, a):
        if jax.default_backend() == "cpu":
            out = jax.lax.map(wrapped, a)
        else:
            out = jax.vmap(fn)(a)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return wrapped


eigh = _sequential_on_cpu(lambda a: tuple(jnp.linalg.eigh(a)))
eigvalsh = _sequential_on_cpu(lambda a: jnp.linalg.eigvalsh(a))
qr = _sequential_on_cpu(lambda a: tuple(jnp.linalg.qr(a)))
