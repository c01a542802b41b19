"""The adaptive rANS coder: exact round trips, sizes near the entropy, clear errors on damaged streams."""

from __future__ import annotations

import numpy as np
import pytest

from SirenCompressLib import entropy
from SirenCompressLib.errors import ArchiveError


def entropy_bytes(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size / 8)


@pytest.mark.parametrize("count", [0, 1, 7, 4095, 4096, 4097, 30001])
def test_round_trip_with_contexts(count):
    rng = np.random.default_rng(count)
    symbols = rng.integers(0, 40, count) * rng.integers(0, 2, count)
    contexts = rng.integers(0, 3, count)
    data = entropy.encode(symbols, 40, contexts, 3)
    np.testing.assert_array_equal(entropy.decode(data, count, 40, contexts, 3), symbols)


def test_extreme_symbols_and_a_one_symbol_alphabet():
    symbols = np.array([0, 255] * 5000 + [255] * 3000)
    np.testing.assert_array_equal(entropy.decode(entropy.encode(symbols, 256), symbols.size, 256), symbols)
    ones = np.zeros(5000, dtype=int)
    data = entropy.encode(ones, 1)
    assert len(data) < 50
    np.testing.assert_array_equal(entropy.decode(data, 5000, 1), ones)


def test_size_is_close_to_the_order0_entropy():
    rng = np.random.default_rng(0)
    symbols = np.clip(np.rint(rng.normal(128, 12, 200_000)), 0, 255).astype(int)
    size = len(entropy.encode(symbols, 256))
    assert entropy_bytes(symbols) < size < 1.01 * entropy_bytes(symbols) + 600


def test_contexts_separate_differently_distributed_symbols():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 50_000), rng.integers(200, 256, 50_000)
    symbols, contexts = np.concatenate([a, b]), np.repeat([0, 1], 50_000)
    with_contexts = len(entropy.encode(symbols, 256, contexts, 2))
    assert with_contexts < 0.95 * len(entropy.encode(symbols, 256))
    assert with_contexts < 1.02 * (entropy_bytes(a) + entropy_bytes(b)) + 600


@pytest.mark.parametrize("damage", ["truncate", "extend", "flip", "count"])
def test_damaged_streams_are_archive_errors(damage):
    rng = np.random.default_rng(2)
    symbols = rng.integers(0, 256, 20_000)
    data = bytearray(entropy.encode(symbols, 256))
    count = symbols.size
    if damage == "truncate":
        data = data[:-10]
    elif damage == "extend":
        data += b"\0\0"
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        count -= 1
    with pytest.raises(ArchiveError):
        entropy.decode(bytes(data), count, 256)


def test_symbols_outside_the_alphabet_are_refused():
    with pytest.raises(ValueError, match="lie in"):
        entropy.encode(np.array([0, 5]), 5)
