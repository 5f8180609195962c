"""JAX's default PRNG (Threefry-2x32), bit for bit, with its 20 rounds unrolled on every platform.

JAX lowers the Threefry hash as a 5-step loop on the CPU and as straight-line code
elsewhere. In memgen's kernels the loop cost compiling and running time on the CPU: each step
wrote the whole hash state of a draw (2^20 words for a training set) to memory and read it
back. Every engine's root key is a key of ``UNROLLED`` (``key``), a PRNG implementation
defined with ``jax.extend.random`` whose hash is the same, as straight-line ``jnp`` code; on
2 CPU devices the quick linear bench compiled ~0.3 s sooner and ran ~7% faster, the denoiser
bench's ensemble compiled in 2.2 s instead of 4.3 (docs/architecture.md), with the very same
numbers: ``tests/test_threefry.py`` holds keys and bits equal to ``jax.random``'s.

The hash is memgen's, and with it ``random_bits``, ``split`` and ``fold_in`` (the same
counters as JAX's); seeding is JAX's own function, and uniform, normal and integer variates
are made from the bits by ``jax.random`` as for any key. The hash is Threefry-2x32 with 20 rounds (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011), counter ``i`` the element's
row-major index, as JAX's partitionable Threefry (the default since jax 0.5) counts; a
process that sets ``jax_threefry_partitionable`` off changes ``jax.random``'s numbers, not
these (but for a single draw of 2^32 elements or more, left to JAX's own function). memgen's
streams are Threefry whatever ``jax_default_prng_impl`` says.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl, threefry_prng_impl

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # the key schedule's constant


def _rotl(v: jax.Array, r: int) -> jax.Array:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def hash2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32, 20 rounds, of counter words (x1, x2) under key (k1, k2); uint32 throughout.

    Args:
        k1, k2: the key words [] (uint32).
        x1, x2: the counter words, any one shape (uint32).

    Returns:
        The two output words, x's shape.
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):  # 5 x 4 rounds, the key injected after each four
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotl(x2, r)
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _counters(shape: tuple[int, ...]) -> jax.Array:
    """The low counter word of each element: its row-major index (the high word is 0)."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"split into {size} keys: at most 2^32 - 1")
    return jax.lax.iota(np.uint32, size).reshape(shape)


def _hash(key: jax.Array, lo: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The hash under one key (key data [2] uint32) of counters (0, lo): what bits, split and
    fold_in are all made of."""
    return hash2x32(key[0], key[1], jnp.zeros_like(lo), lo)


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random``'s Threefry bits of ``bit_width`` (8, 16, 32 or 64) for one key (key data
    [2] uint32): the hash of each element's counter, its two words XORed (64 bits: joined)."""
    if math.prod(shape) >= 2**32:  # the counter's high word is not 0: JAX's own function
        return threefry_prng_impl.random_bits(key, bit_width, shape)
    b1, b2 = _hash(key, _counters(shape))
    if bit_width == 64:
        return (b1.astype(np.uint64) << np.uint64(32)) | b2.astype(np.uint64)
    return (b1 ^ b2).astype(f"uint{bit_width}")


def _split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.split``'s keys [*shape, 2]: the hash's two words of counter i are key i."""
    return _derived(jnp.stack(_hash(key, _counters(shape)), axis=-1))


def _fold_in(key: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in``'s key [2]: the hash of counter (0, data)."""
    return _derived(jnp.stack(_hash(key, jnp.asarray(data, np.uint32))))


def _derived(words: jax.Array) -> jax.Array:
    """A derived key's words, computed once where they are made (an optimisation barrier).

    Straight-line hashes of hashes (a key split, folded with a traced step, split again, its
    bits drawn: the denoisers' training step) left XLA to fuse each chain into its consumers,
    and the XLA of jaxlib 0.11.2 and 0.12.0.1 then compiled a toy denoiser's training
    program for over 5 minutes without end, where JAX's own rolled hash took 1.2 s (0.12.0.1)
    and 0.10.2 took 1.4 s; with the barrier, 1.0 s on all three. A key is two words: keeping
    it is free. The barrier changes no bit (tests/test_threefry.py).
    """
    return jax.lax.optimization_barrier(words)


UNROLLED = define_prng_impl(
    key_shape=threefry_prng_impl.key_shape, seed=threefry_prng_impl.seed, split=_split,
    random_bits=_random_bits, fold_in=_fold_in, name="threefry2x32_unrolled", tag="fru")


def unrolled(key: jax.Array) -> jax.Array:
    """A Threefry key, any shape, as the same key of ``UNROLLED``: every draw from it gives
    ``jax.random``'s numbers, computed by straight-line code.

    Raises:
        ValueError: for a key of another PRNG (its words would silently become a Threefry key).
    """
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(key)  # a name for JAX's own PRNGs, a spec for ours
        if impl != UNROLLED and impl != "threefry2x32":
            raise ValueError(f"key: a Threefry key (jax.random.key(seed)), got one of the {impl} PRNG")
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=UNROLLED)


def key(seed) -> jax.Array:
    """``jax.random.key(seed)`` as a key of ``UNROLLED``: the root of every engine's draws."""
    return jax.random.key(seed, impl=UNROLLED)
