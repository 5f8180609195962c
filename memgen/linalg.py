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

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


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


def fold_row_blocks(fn: Callable, init, X: jax.Array, lo, hi, block: int):
    """``fn(acc, Xb, keep)`` folded over the ``block``-row blocks of X [n_pad, d] that meet
    rows [lo, hi) (traced bounds: a loop of traced length).

    ``Xb`` [B, d] is block b, rows [b B, b B + B), moved back to end at row n_pad - 1 when it
    would overrun X; ``keep`` [B] (bool) marks its rows in [lo, hi) that no earlier block
    covered, so each row counts once. B = min(block, n_pad).
    """
    n_pad = X.shape[0]
    B = min(block, n_pad)
    hi = jnp.asarray(hi)
    lo = jnp.asarray(lo, hi.dtype)

    def body(b, acc):
        b = b.astype(hi.dtype)  # an int64 index when the loop's bounds are concrete (x64)
        start = jnp.minimum(b * B, n_pad - B)  # what dynamic_slice would clamp to, made explicit
        rows = start + jnp.arange(B, dtype=hi.dtype)
        keep = (rows >= jnp.maximum(lo, b * B)) & (rows < jnp.minimum(hi, b * B + B))
        return fn(acc, jax.lax.dynamic_slice_in_dim(X, start, B), keep)

    return jax.lax.fori_loop(lo // B, (hi + B - 1) // B, body, init)


def krylov_spaces(matvec, starts: tuple[jax.Array, ...], blocks: int,
                  rank=None) -> tuple[tuple[jax.Array, ...], ...]:
    """Block Krylov spaces of one symmetric operator from several groups of start blocks, in one loop.

    Each group ``g`` of a start array [G, b, d] grows its own space
    ``[V0_g, A V0_g, ..., A^(blocks-1) V0_g]`` (block Lanczos with full re-orthogonalisation:
    Gram-Schmidt twice against the group's basis, then ``qr`` of the block, or a norm for
    b = 1), and its Rayleigh-Ritz pairs come from ``ritz``. Every block of every group goes
    through ONE ``matvec`` per step: for an operator whose cost is reading a large matrix
    (``X^T (X V)``), S single-vector spaces and a top-k block share each pass over it.

    With ``rank`` (A's rank r, traced), a group of block size b stops growing (its further
    rows are zero) once it holds ``min(r + b, d)`` rows, row by row (a block's first rows after
    ``qr`` span its first real directions): in exact arithmetic the space of b starts lies in
    their span plus A's range, so any further "direction" is rounding noise. Normalised, that
    noise is not orthogonal to the basis, and ``ritz``, dropping the ill-conditioned
    directions it makes, dropped part of the top eigenvectors with them (top_eig and Q off by up to 1e-4 at d = 96, n = 48, by an amount
    that depended on the operator's summation order). The cap uses no threshold on the
    remainders: under an outlier far above the bulk (a mean), float32 rounding and the bulk's
    genuine directions overlap, and zeroing small remainders cut genuine ones (q off by 0.04
    at d = 4096).

    Vectors are rows, so a block and its update are contiguous in memory (with columns, the
    slicing and writing inside the loop made a d = 2048 run 8x slower than its operator).

    Args:
        matvec: ``[p, d] -> [p, d]``, the symmetric operator A applied to each row (``V A``).
        starts: start blocks, each [G, b, d] (nonzero; random, or the vectors to transform).
        blocks: Krylov depth (>= 1): each space has dimension ``blocks * b`` (at most
            ``min(rank + b, d)`` given ``rank``).
        rank: A's rank (traced int; an upper bound will do), or None: no cap.

    Returns:
        per start array: (basis [G, m, d] with m = blocks * b, Ritz values [G, m] ascending,
        Ritz coordinates Y [G, m, m]: the Ritz vectors are ``Y^T basis``), as ``ritz`` gives them.
    """
    def orthonormal(W):  # [G, b, d] -> rows orthonormal within each group
        if W.shape[1] == 1:
            return W / jnp.maximum(jnp.linalg.norm(W, axis=-1, keepdims=True), jnp.finfo(W.dtype).tiny)
        return jnp.swapaxes(qr(jnp.swapaxes(W, 1, 2))[0], 1, 2)

    bases = [jnp.zeros((blocks + 1,) + v.shape, v.dtype).at[0].set(orthonormal(v)) for v in starts]  # spare row
    images = [jnp.zeros((blocks,) + v.shape, v.dtype) for v in starts]
    sizes = [v.shape[0] * v.shape[1] for v in starts]

    def step(j, carry):
        bases, images = carry
        cur = [B[j] for B in bases]
        out = matvec(jnp.concatenate([c.reshape(-1, c.shape[-1]) for c in cur]))
        outs = jnp.split(out, list(np.cumsum(sizes)[:-1]))
        new_bases, new_images = [], []
        for B, AB, c, W in zip(bases, images, cur, outs):
            W = W.reshape(c.shape)
            new_images.append(AB.at[j].set(W))
            for _ in range(2):  # twice is enough (Giraud et al. 2005); unfilled rows are zero
                W = W - jnp.einsum("mgbd,gmbc->gcd", B, jnp.einsum("mgbd,gcd->gmbc", B, W))
            # past an exhausted space (no ``rank`` given) this is rounding noise: ``ritz`` copes, in part
            W = orthonormal(W)
            if rank is not None:  # row i of block j + 1 exists while (j + 1) b + i < min(r + b, d)
                b, d = c.shape[1:]
                room = jnp.minimum(jnp.asarray(rank, jnp.int32) + b, d)
                rows = (jnp.asarray(j, jnp.int32) + 1) * b + jnp.arange(b, dtype=jnp.int32)
                W = jnp.where((rows < room)[None, :, None], W, 0)
            new_bases.append(B.at[j + 1].set(W))
        return new_bases, new_images

    bases, images = jax.lax.fori_loop(0, blocks, step, (bases, images))
    out = []
    for B, AB in zip(bases, images):
        G, b, d = B.shape[1:]
        K = jnp.moveaxis(B[:blocks], 0, 1).reshape(G, blocks * b, d)
        AK = jnp.moveaxis(AB, 0, 1).reshape(G, blocks * b, d)
        s, Y = jax.vmap(ritz)(K, AK)
        out.append((K, s, Y))
    return tuple(out)


def top_eigh_matfree(matvec, V0: jax.Array, k: int, blocks: int) -> tuple[jax.Array, jax.Array]:
    """Top-k eigenpairs of a symmetric operator known only through ``matvec`` (block Lanczos).

    The block Krylov space of ``V0`` (``krylov_spaces``): ``blocks * b`` operator
    applications for ``b`` starting vectors, the matrix never formed. Exact once the space
    holds the top-k invariant subspace; error falls with the gap between eigenvalue k and the
    rest (Saad, *Numerical Methods for Large Eigenvalue Problems*, ch. 6).

    Args:
        matvec: ``[b, d] -> [b, d]``, the symmetric operator A applied to each row (``V A``).
        V0: starting block [b, d] (random; b >= k).
        k: eigenpairs wanted; blocks: Krylov depth (>= 1).

    Returns:
        (eigenvalues [k] descending, eigenvectors [d, k] orthonormal columns).
    """
    ((K, s, Y),) = krylov_spaces(matvec, (V0[None],), blocks)
    return top_pairs(K[0], s[0], Y[0], k)


def top_pairs(K: jax.Array, s: jax.Array, Y: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The top-k of one space's Ritz pairs (basis K [m, d], values s [m], coordinates Y [m, m]):
    (values [k] descending, vectors [d, k])."""
    return s[::-1][:k], (K.T @ Y)[:, ::-1][:, :k]


def ritz(K: jax.Array, AK: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rayleigh-Ritz pairs of a symmetric A on span(K), for a basis that may have lost orthogonality.

    Once a Krylov space is exhausted (A of rank below its dimension), the next "direction" is
    rounding noise; normalised (or completed by ``qr``) it need not be orthogonal to the basis,
    and ``K A K^T`` is then no projection of A (Ritz values above A's largest, seen at
    rank 128, d = 512). Orthonormalising K through its Gram matrix and dropping the directions
    it does not span (Gram eigenvalue < 1e-2: the columns are unit or zero) makes the pairs
    exact on the span whatever K's state, since ``AK`` is A applied to the very rows of K.

    Args:
        K: basis [m, d] (rows of norm 1 or 0); AK: its rows times A [m, d].

    Returns:
        (Ritz values [m] ascending; 0 for dropped directions, coordinates Y [m, m] of the Ritz
        vectors ``K^T Y``: orthonormal columns, zero for dropped directions).
    """
    G = K @ K.T
    g, P = eigh((G + G.T) / 2)
    keep = g > 1e-2
    W = jnp.where(keep[None, :], P / jnp.sqrt(jnp.where(keep, g, 1))[None, :], 0)  # K^T W: orthonormal
    T = W.T @ (K @ AK.T) @ W
    s, Z = eigh((T + T.T) / 2)
    return s, W @ Z
