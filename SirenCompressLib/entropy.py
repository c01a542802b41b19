"""Adaptive entropy coding of integer symbols: interleaved rANS in numpy (no compiled code, numpy alone).

The symbols are split into `lanes` interleaved streams (symbol i goes to lane i mod lanes) that are coded
in lock step, so every step is a handful of vectorised numpy operations. The probabilities are adaptive
and need no table in the stream: each context keeps counts of the symbols coded so far (starting at one
each), and a step codes its symbols with the counts of all earlier steps. Encoder and decoder run the same
integer arithmetic, so they agree exactly.

Stream layout: uint32 lane count, uint32 symbol count, the final rANS state of each lane (uint32), then the
16-bit renormalisation words in the order the decoder reads them. All little-endian.
"""

from __future__ import annotations

import numpy as np

from .errors import ArchiveError

PROB_BITS = 15  # probabilities are multiples of 2^-15
STATE_LOW = 1 << 16  # rANS state in [2^16, 2^32); one 16-bit word moves per renormalisation
HEADER = np.dtype("<u4")
WORD = np.dtype("<u2")
SYMBOLS_PER_LANE = 4096


def encode(symbols: np.ndarray, alphabet: int, contexts: np.ndarray | None = None, n_contexts: int = 1) -> bytes:
    """Code integer `symbols` in [0, alphabet), each with its context in [0, n_contexts) (default: all 0)."""
    count = np.asarray(symbols).size
    symbols, contexts, lanes = _layout(symbols, alphabet, contexts, n_contexts)
    steps = symbols.shape[0]
    model = _Model(alphabet, n_contexts)
    starts = np.empty(symbols.shape, dtype=np.uint64)
    freqs = np.empty(symbols.shape, dtype=np.uint64)
    for k in range(steps):
        cum = model.cumulative()
        starts[k] = cum[contexts[k], symbols[k]]
        freqs[k] = cum[contexts[k], symbols[k] + 1] - starts[k]
        model.update(contexts[k], symbols[k])
    state = np.full(lanes, STATE_LOW, dtype=np.uint64)
    words, emitted = np.zeros((steps, lanes), dtype=np.uint64), np.zeros((steps, lanes), dtype=bool)
    for k in range(steps - 1, -1, -1):
        limit = freqs[k] << np.uint64(32 - PROB_BITS)
        out = state >= limit
        words[k], emitted[k] = state & np.uint64(0xFFFF), out
        state = np.where(out, state >> np.uint64(16), state)
        state = ((state // freqs[k]) << np.uint64(PROB_BITS)) + state % freqs[k] + starts[k]
    head = np.array([lanes, count], dtype=HEADER).tobytes() + state.astype(HEADER).tobytes()
    return head + words[emitted].astype(WORD).tobytes()


def decode(data: bytes, count: int, alphabet: int, contexts: np.ndarray | None = None,
           n_contexts: int = 1) -> np.ndarray:
    """The `count` symbols coded by `encode` with the same alphabet and contexts (int64)."""
    if len(data) < 8:
        raise ArchiveError("entropy-coded stream is truncated")
    lanes, total = (int(v) for v in np.frombuffer(data, dtype=HEADER, count=2))
    if lanes != _lanes(count) or total != count:
        raise ArchiveError("entropy-coded stream does not match the expected symbol count")
    if len(data) < 8 + 4 * lanes or (len(data) - 8 - 4 * lanes) % 2:
        raise ArchiveError("entropy-coded stream is truncated")
    state = np.frombuffer(data, dtype=HEADER, count=lanes, offset=8).astype(np.uint64)
    stream = np.frombuffer(data, dtype=WORD, offset=8 + 4 * lanes).astype(np.uint64)
    contexts = _contexts(contexts, count, n_contexts).reshape(-1, lanes)
    steps = contexts.shape[0]
    model = _Model(alphabet, n_contexts)
    symbols = np.empty((steps, lanes), dtype=np.int64)
    mask, at = np.uint64((1 << PROB_BITS) - 1), 0
    for k in range(steps):
        cum = model.cumulative()[contexts[k]]
        slot = state & mask
        s = (cum[:, 1:] <= slot[:, None]).sum(axis=1)
        start = cum[np.arange(lanes), s]
        freq = cum[np.arange(lanes), s + 1] - start
        state = freq * (state >> np.uint64(PROB_BITS)) + slot - start
        need = state < STATE_LOW
        n = int(need.sum())
        if at + n > stream.size:
            raise ArchiveError("entropy-coded stream is truncated")
        state[need] = (state[need] << np.uint64(16)) | stream[at:at + n]
        at += n
        symbols[k] = s
        model.update(contexts[k], s)
    if at != stream.size or np.any(state != STATE_LOW):
        raise ArchiveError("entropy-coded stream is corrupt")
    return symbols.ravel()[:count]


class _Model:
    """Adaptive symbol counts per context, turned into cumulative frequencies summing to 2^PROB_BITS.
    Only the contexts updated since the last call are recomputed."""

    def __init__(self, alphabet: int, n_contexts: int) -> None:
        if not 1 <= alphabet <= 1 << (PROB_BITS - 1):
            raise ValueError(f"alphabet must have 1 to {1 << (PROB_BITS - 1)} symbols")
        self.counts = np.ones((n_contexts, alphabet), dtype=np.int64)
        self.cum = np.zeros((n_contexts, alphabet + 1), dtype=np.uint64)
        self.stale = np.arange(n_contexts)

    def cumulative(self) -> np.ndarray:
        """(contexts, alphabet + 1) uint64: every symbol gets at least 1, the total is exactly 2^PROB_BITS."""
        if self.stale.size:
            counts = self.counts[self.stale]
            spare = (1 << PROB_BITS) - counts.shape[1]
            freq = 1 + counts * spare // counts.sum(axis=1, keepdims=True)
            freq[np.arange(len(counts)), counts.argmax(axis=1)] += (1 << PROB_BITS) - freq.sum(axis=1)
            self.cum[self.stale, 1:] = np.cumsum(freq, axis=1)
            self.stale = self.stale[:0]
        return self.cum

    def update(self, contexts: np.ndarray, symbols: np.ndarray) -> None:
        np.add.at(self.counts, (contexts, symbols), 1)
        self.stale = np.unique(contexts)


def _lanes(count: int) -> int:
    return int(np.clip(count // SYMBOLS_PER_LANE, 1, 4096))


def _padded(count: int, lanes: int) -> int:
    return -(-count // lanes) * lanes


def _contexts(contexts: np.ndarray | None, count: int, n_contexts: int) -> np.ndarray:
    """Contexts as int64, padded (with context 0) to whole steps."""
    lanes = _lanes(count)
    out = np.zeros(_padded(count, lanes), dtype=np.int64)
    if contexts is not None:
        contexts = np.asarray(contexts).ravel()
        if contexts.size != count or (count and not 0 <= contexts.min() <= contexts.max() < n_contexts):
            raise ValueError(f"need {count} contexts in [0, {n_contexts})")
        out[:count] = contexts
    return out


def _layout(symbols: np.ndarray, alphabet: int, contexts: np.ndarray | None,
            n_contexts: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Symbols and contexts as (steps, lanes) int64 arrays, padded with symbol 0, and the lane count."""
    symbols = np.asarray(symbols).ravel()
    if symbols.size and not 0 <= symbols.min() <= symbols.max() < alphabet:
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    count, lanes = symbols.size, _lanes(symbols.size)
    padded = np.zeros(_padded(count, lanes), dtype=np.int64)
    padded[:count] = symbols
    return padded.reshape(-1, lanes), _contexts(contexts, count, n_contexts).reshape(-1, lanes), lanes
