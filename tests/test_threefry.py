"""memgen's unrolled Threefry (``memgen.threefry``) draws jax.random's numbers, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from memgen import data as data_mod
from memgen import threefry


def _hash(key, count):
    k, c = np.uint32(key), np.uint32(count)
    return tuple(int(v) for v in threefry.hash2x32(jnp.uint32(k[0]), jnp.uint32(k[1]), jnp.uint32(c[0]),
                                                  jnp.uint32(c[1])))


def test_hash_matches_the_reference_vectors_and_jax():
    """The known-answer vectors of the Random123 reference implementation (the ones JAX's own
    tests use), and JAX's hash on random keys and counters."""
    assert _hash([0, 0], [0, 0]) == (0x6B200159, 0x99BA4EFE)
    assert _hash([0xFFFFFFFF] * 2, [0xFFFFFFFF] * 2) == (0x1CB996FC, 0xBB002BE7)
    assert _hash([0x13198A2E, 0x03707344], [0x243F6A88, 0x85A308D3]) == (0xC4923A9C, 0x483DF7A0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        key, count = rng.integers(0, 2**32, 2, dtype=np.uint32), rng.integers(0, 2**32, 2, dtype=np.uint32)
        assert _hash(key, count) == tuple(int(v) for v in threefry_2x32(jnp.asarray(key), jnp.asarray(count)))


def test_a_wrong_rotation_is_caught(monkeypatch):
    """Negative control: the comparisons above see a one-constant change of the hash."""
    monkeypatch.setattr(threefry, "_ROTATIONS", ((13, 15, 26, 6), (17, 29, 16, 25)))
    assert _hash([0, 0], [0, 0]) != (0x6B200159, 0x99BA4EFE)


@pytest.mark.parametrize("shape", [(1,), (7,), (32, 256), (3, 5, 2), (0,), (4, 0)])
def test_draws_equal_jax_random(shape, seed):
    """Normals and bits from fresh keys (fold_in, split, vmap, jit) equal jax.random's."""
    root = jax.random.key(seed)
    keys = jax.random.split(jax.random.fold_in(root, 3), 4)
    want = jax.vmap(lambda k: jax.random.normal(k, shape, jnp.float32))(keys)
    got = jax.jit(jax.vmap(lambda k: jax.random.normal(threefry.unrolled(k), shape, jnp.float32)))(keys)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    k = jax.random.fold_in(root, 11)
    np.testing.assert_array_equal(np.asarray(jax.random.bits(threefry.unrolled(k), shape)),
                                  np.asarray(jax.random.bits(k, shape)))
    np.testing.assert_array_equal(np.asarray(data_mod.normal(k, shape, jnp.float32)),
                                  np.asarray(jax.random.normal(k, shape, jnp.float32)))


def test_keys_and_every_bit_width_equal_jax_random(seed):
    """split, fold_in, and bits of 8 to 64 bits (64 and float64 under x64, as the suite runs),
    from a fresh key and from ``threefry.key``; a key of another PRNG is refused by name."""
    k = jax.random.fold_in(jax.random.key(seed), 5)
    u = threefry.unrolled(k)
    for shape in ((), (3,), (2, 4)):
        want = jax.random.split(k, shape) if shape else jax.random.split(k)
        got = jax.random.split(u, shape) if shape else jax.random.split(u)
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
    for data in (0, 1, 12345, 2**32 - 1):
        np.testing.assert_array_equal(jax.random.key_data(jax.random.fold_in(u, data)),
                                      jax.random.key_data(jax.random.fold_in(k, data)))
    np.testing.assert_array_equal(jax.random.key_data(threefry.key(seed)), jax.random.key_data(jax.random.key(seed)))
    widths = [jnp.uint8, jnp.uint16, jnp.uint32] + ([jnp.uint64] if jax.config.jax_enable_x64 else [])
    for dt in widths:
        np.testing.assert_array_equal(jax.random.bits(u, (3, 5), dt), jax.random.bits(k, (3, 5), dt))
    np.testing.assert_array_equal(jax.random.randint(u, (9,), 0, 1000), jax.random.randint(k, (9,), 0, 1000))
    np.testing.assert_array_equal(jax.random.uniform(u, (9,)), jax.random.uniform(k, (9,)))
    np.testing.assert_array_equal(jax.random.normal(u, (9,), float), jax.random.normal(k, (9,), float))
    with pytest.raises(ValueError, match="philox4x32"):
        threefry.unrolled(jax.random.key(seed, impl="philox4x32"))


def test_memgens_draws_take_the_unrolled_hash():
    """``data.normal`` (every draw of the spectral engines) lowers without JAX's Threefry
    function and its loop (which ``jax.random.normal`` has, on the CPU)."""
    def lowered(f):
        return jax.jit(f).lower(jax.random.key(0)).as_text()

    ours = lowered(lambda k: data_mod.normal(k, (32, 64), jnp.float32))
    theirs = lowered(lambda k: jax.random.normal(k, (32, 64), jnp.float32))
    assert "threefry" not in ours and "while" not in ours
    if jax.default_backend() == "cpu":
        assert "threefry" in theirs and "while" in theirs


def test_derived_keys_are_made_once_behind_a_barrier():
    """Each key made by split or fold_in is kept behind an optimisation barrier: without it the
    XLA of jaxlib 0.11.2 and 0.12.0.1 fused the denoisers' chains of hashes of hashes into their
    consumers and compiled the training program without end (0.10.2, CI's, did not). Checked on
    the lowered program (the hang needs those versions), for a chain as the training step has."""
    def chain(k, t):
        k1, k2 = jax.random.split(k)
        return jax.random.normal(jax.random.split(jax.random.fold_in(k2, t))[0], (4,)), jax.random.uniform(k1)

    def barriers(k):
        return jax.jit(chain).lower(k, jnp.uint32(3)).as_text().count("optimization_barrier")

    assert barriers(threefry.key(0)) == 3  # two splits and a fold_in
    assert barriers(jax.random.key(0)) == 0  # the control: JAX's own implementation has none
    a, b = jax.jit(chain)(threefry.key(5), jnp.uint32(3)), jax.jit(chain)(jax.random.key(5), jnp.uint32(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
