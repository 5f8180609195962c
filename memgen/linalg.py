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


def top_eigh_matfree(matvec, V0: jax.Array, k: int, blocks: int) -> tuple[jax.Array, jax.Array]:
    """Top-k eigenpairs of a symmetric operator known only through ``matvec`` (block Lanczos).

    Builds the block Krylov space ``[V0, A V0, ..., A^(blocks-1) V0]`` with full
    re-orthogonalisation (Gram-Schmidt twice, then ``qr``) and takes the Rayleigh-Ritz pairs of
    A on it: ``blocks * b`` operator applications for ``b = V0.shape[1]`` starting vectors,
    the matrix never formed. Exact once the space holds the top-k invariant subspace; error
    falls with the gap between eigenvalue k and the rest (Saad, *Numerical Methods for Large
    Eigenvalue Problems*, ch. 6).

    Args:
        matvec: ``[d, b] -> [d, b]``, the symmetric operator A applied to b vectors.
        V0: starting block [d, b] (random; b >= k).
        k: eigenpairs wanted; blocks: Krylov depth (>= 1).

    Returns:
        (eigenvalues [k] descending, eigenvectors [d, k] orthonormal).
    """
    d, b = V0.shape
    m = blocks * b
    K = jnp.zeros((d, m + b), V0.dtype).at[:, :b].set(qr(V0)[0])  # the basis, one spare block
    AK = jnp.zeros((d, m), V0.dtype)  # A times the basis

    def step(j, carry):  # one operator application per block: A appears once in the program
        K, AK = carry
        W = matvec(jax.lax.dynamic_slice_in_dim(K, j * b, b, axis=1))
        AK = jax.lax.dynamic_update_slice_in_dim(AK, W, j * b, axis=1)
        for _ in range(2):  # twice is enough (Giraud et al. 2005); unfilled columns are zero
            W = W - K @ (K.T @ W)
        return jax.lax.dynamic_update_slice_in_dim(K, qr(W)[0], (j + 1) * b, axis=1), AK

    K, AK = jax.lax.fori_loop(0, blocks, step, (K, AK))
    K = K[:, :m]
    T = K.T @ AK
    s, Y = eigh((T + T.T) / 2)
    return s[::-1][:k], (K @ Y)[:, ::-1][:, :k]
