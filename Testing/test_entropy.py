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


def test_streams_decoded_in_lock_step_give_what_each_gives_alone():
    rng = np.random.default_rng(4)
    plans = [([5, 0, 300, 41], 1, 7, 0), ([64, 64, 64, 64], 16, 30, 40), ([0, 0, 2000, 1], 4, 3, 512),
             ([9, 1, 0, 700], 64, 1, 512)]  # chunks, lanes, alphabet, update_every
    streams, symbols, contexts = [], [], []
    for chunks, lanes, alphabet, every in plans:
        n = sum(chunks)
        symbols.append(rng.integers(0, alphabet, n))
        contexts.append(rng.integers(0, 3, n))
        streams.append(entropy.encode_chunks(symbols[-1], alphabet, contexts[-1], 3, chunks, lanes, 8, every))
    for every in {p[3] for p in plans}:  # the update schedule is the decoder's: streams that share it
        same = [s for s, p in enumerate(plans) if p[3] == every]
        decoder = entropy.ChunkDecoders([streams[s] for s in same], [plans[s][2] for s in same], 3,
                                        [symbols[s].size for s in same], [plans[s][1] for s in same], 8, every)
        at = np.zeros(len(same), dtype=int)
        got = [[] for _ in same]
        for c in range(4):
            asked = [None if plans[s][0][c] == 0 and c % 2 else contexts[s][at[i]:at[i] + plans[s][0][c]]
                     for i, s in enumerate(same)]
            for i, part in enumerate(decoder.next(asked)):
                if part is not None:
                    got[i].append(part)
                    at[i] += part.size
        decoder.close()
        for i, s in enumerate(same):
            np.testing.assert_array_equal(np.concatenate(got[i]), symbols[s])
