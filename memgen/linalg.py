"""LAPACK calls that are safe inside batched, multi-device CPU kernels.

On the CPU, jaxlib runs a *batched* ``eigh``/``eigvalsh``/``qr`` by splitting the batch over
XLA's intra-op thread pool and blocking a pool thread until the pieces are done
(``jax::ParallelBatchMap``). When several such calls are in flight at once (the two models
of a pair, or one call per device of a sharded chunk) every pool thread can end up blocked:
a deadlock with 0% CPU that Ctrl-C cannot break (seen with jax 0.10.2 on 2 cores). It also
buys nothing there: measured, a batch of 256 x 256 ``eigh`` costs the same per matrix as one
at a time.

So on the CPU no batched LAPACK call may reach XLA, *whatever made it batched*: a ``vmap``
(the ``custom_vmap`` rule below) or a native leading batch dimension of the argument (a
stack of per-lam matrices, say). Both become a ``lax.map`` over single matrices. On GPU/TPU
the calls stay batched; the choice is ``lax.platform_dependent``, i.e. made for the device a
computation is lowered for. ``tests/test_trust.py`` lowers every engine's kernel and checks that
each LAPACK custom call in it sees one matrix.

Every LAPACK-backed call in memgen's kernels goes through this module; a test greps for
``jnp.linalg`` / ``jax.scipy.linalg`` elsewhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _one_at_a_time(fn):
    """``fn`` of ONE matrix [m, n] -> the same function of [..., m, n], looped on the CPU.

    ``single`` is a ``custom_vmap``: a vmap of it (at any depth of nesting) lands in ``many``,
    whose loop calls ``single`` again, so an outer vmap meets the rule once more instead of
    batching the LAPACK call underneath.
    """

    @jax.custom_batching.custom_vmap
    def single(a):
        return fn(a)

    @single.def_vmap
    def _rule(axis_size, in_batched, a):
        out = many(a)  # the vmapped axis is one more leading batch axis
        return out, jax.tree_util.tree_map(lambda _: True, out)

    def loop(a):
        lead = a.shape[:-2]
        out = jax.lax.map(single, a.reshape((-1,) + a.shape[-2:]))
        return jax.tree_util.tree_map(lambda o: o.reshape(lead + o.shape[1:]), out)

    def many(a):
        a = jnp.asarray(a)
        if a.ndim == 2:
            return single(a)
        # chosen when the computation is lowered for its device, not by the process's default
        # backend: a CPU computation in a GPU-default process loops too
        return jax.lax.platform_dependent(a, cpu=loop, default=fn)

    return many


eigh = _one_at_a_time(lambda a: tuple(jnp.linalg.eigh(a)))
eigvalsh = _one_at_a_time(lambda a: jnp.linalg.eigvalsh(a))
qr = _one_at_a_time(lambda a: tuple(jnp.linalg.qr(a)))
