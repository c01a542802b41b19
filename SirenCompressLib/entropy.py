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
COUNT_LIMIT = 1 << 16  # counts of a context with an increment above 1 are halved beyond this total


def encode(symbols: np.ndarray, alphabet: int, contexts: np.ndarray | None = None, n_contexts: int = 1) -> bytes:
    """Code integer symbols with adaptive interleaved rANS (Duda, "Asymmetric numeral systems", arXiv:1311.2540,
    2013).

    Parameters
    ----------
    symbols : ndarray of int
        Values in [0, alphabet).
    alphabet : int
    contexts : ndarray of int or None
        Each symbol's context in [0, n_contexts); None: all 0.
    n_contexts : int

    Returns
    -------
    bytes
    """
    count = np.asarray(symbols).size
    symbols, contexts, lanes = _layout(symbols, alphabet, contexts, n_contexts)
    return _encode_grid(symbols, contexts, np.ones(symbols.shape, dtype=bool), alphabet, n_contexts, count)


def decode(data: bytes, count: int, alphabet: int, contexts: np.ndarray | None = None,
           n_contexts: int = 1) -> np.ndarray:
    """The symbols coded by `encode` with the same alphabet and contexts.

    Parameters
    ----------
    data : bytes
    count : int
        The number of symbols.
    alphabet : int
    contexts : ndarray of int or None
    n_contexts : int

    Returns
    -------
    ndarray of int64, shape (count,)

    Raises
    ------
    ArchiveError
        For a stream that is corrupt or not read to its end.
    """
    lanes = _lanes(count)
    decoder = _Decoder(data, count, lanes, alphabet, n_contexts)
    contexts = _contexts(contexts, count, n_contexts).reshape(-1, lanes)
    active = np.ones(lanes, dtype=bool)
    symbols = np.stack([decoder.step(row, active) for row in contexts]) if count else np.empty((0, lanes))
    decoder.close()
    return symbols.ravel()[:count].astype(np.int64)


def encode_chunks(symbols: np.ndarray, alphabet: int, contexts: np.ndarray, n_contexts: int,
                  chunks: list[int], lanes: int, increment: int = 1, update_every: int = 0) -> bytes:
    """Like `encode`, for symbols that a decoder reads chunk by chunk (`ChunkDecoder`).

    The contexts of a chunk may depend on the symbols of earlier chunks. Each chunk fills whole steps of
    `lanes` symbols; the unused places of its last step cost nothing. The adaptive model carries over from
    chunk to chunk; it learns from each step's symbols, or with `update_every` from the symbols of the steps
    since its last update once they are that many, and at each chunk's end (fewer updates: faster with few
    lanes).

    Parameters
    ----------
    symbols : ndarray of int
    alphabet : int
    contexts : ndarray of int
    n_contexts : int
    chunks : list of int
        The chunks' lengths.
    lanes : int
        Interleaved streams.
    increment : int
        What each symbol adds to its count (above 1, counts are halved past COUNT_LIMIT: faster adaptation).
    update_every : int
        Symbols between model updates (0: every step).

    Returns
    -------
    bytes
    """
    symbols, contexts = np.asarray(symbols).ravel(), np.asarray(contexts).ravel()
    if sum(chunks) != symbols.size or contexts.size != symbols.size:
        raise ValueError("chunk sizes must add up to the number of symbols and contexts")
    if symbols.size and not (0 <= symbols.min() <= symbols.max() < alphabet
                             and 0 <= contexts.min() <= contexts.max() < n_contexts):
        raise ValueError(f"symbols must lie in [0, {alphabet}) and contexts in [0, {n_contexts})")
    places = _chunk_places(chunks, lanes)
    grid = np.zeros(places.size, dtype=np.int64), np.zeros(places.size, dtype=np.int64)
    active = np.zeros(places.size, dtype=bool)
    grid[0][places >= 0], grid[1][places >= 0] = symbols, contexts
    active[places >= 0] = True
    shape = (-1, lanes)
    updates = (np.concatenate([_update_steps(n, lanes, update_every) for n in chunks] + [np.zeros(0, dtype=bool)])
               if update_every else None)
    return _encode_grid(grid[0].reshape(shape), grid[1].reshape(shape), active.reshape(shape), alphabet,
                        n_contexts, symbols.size, increment, updates)


def _update_steps(n: int, lanes: int, every: int) -> np.ndarray:
    """For the steps of a chunk of `n` symbols: whether the model learns after each (bool)."""
    steps = -(-n // lanes)
    done = np.minimum(np.arange(1, steps + 1) * lanes, n)
    after = np.diff(done // max(every, 1), prepend=0) > 0
    if steps:
        after[-1] = True
    return after


class ChunkDecoder:
    """Reads a stream written by `encode_chunks` chunk by chunk, in the same chunks: `next(contexts)`
    returns the symbols (int64) of a chunk of len(contexts) symbols; `close()` checks that the whole
    stream, `count` symbols in all, was used."""

    def __init__(self, data: bytes, alphabet: int, n_contexts: int, count: int, lanes: int,
                 increment: int = 1, update_every: int = 0) -> None:
        self._decoder = _Decoder(data, count, lanes, alphabet, n_contexts, increment)
        self._count, self._lanes, self._read, self._every = count, lanes, 0, update_every

    def next(self, contexts: np.ndarray) -> np.ndarray:
        """The symbols of the next chunk.

        Parameters
        ----------
        contexts : ndarray of int
            One per symbol of the chunk.

        Returns
        -------
        ndarray of int64
        """
        contexts = np.asarray(contexts, dtype=np.int64).ravel()
        n, lanes = contexts.size, self._lanes
        if self._read + n > self._count:
            raise ArchiveError("entropy-coded stream holds fewer symbols than its reader asks for")
        if n and not 0 <= contexts.min() <= contexts.max() < self._decoder.model.counts.shape[0]:
            raise ValueError("context out of range")
        self._read += n
        steps = -(-n // lanes)
        padded = np.zeros(steps * lanes, dtype=np.int64)
        padded[:n] = contexts
        out = np.empty((steps, lanes), dtype=np.int64)
        after = _update_steps(n, lanes, self._every) if self._every else np.ones(steps, dtype=bool)
        first = 0
        for k, row in enumerate(padded.reshape(steps, lanes)):
            out[k] = self._decoder.step(row, np.arange(k * lanes, (k + 1) * lanes) < n, not self._every)
            if self._every and after[k]:
                end = min((k + 1) * lanes, n)
                self._decoder.model.update(padded[first:end], out.ravel()[first:end])
                first = end
        return out.ravel()[:n]

    def close(self) -> None:
        """Check that the whole stream was used.

        Raises
        ------
        ArchiveError
            When it was not read to its end.
        """
        if self._read != self._count:
            raise ArchiveError("entropy-coded stream was not read to its end")
        self._decoder.close()


def _encode_grid(symbols: np.ndarray, contexts: np.ndarray, active: np.ndarray, alphabet: int,
                 n_contexts: int, count: int, increment: int = 1, updates: np.ndarray | None = None) -> bytes:
    """rANS-code (steps, lanes) symbols; inactive places are coded with probability 1 (no bits). The model
    learns after every step, or only after the steps where `updates` (bool per step) is set, from all steps
    since the last."""
    steps, lanes = symbols.shape
    model = _Model(alphabet, n_contexts, increment)
    starts = np.zeros(symbols.shape, dtype=np.uint64)
    freqs = np.full(symbols.shape, 1 << PROB_BITS, dtype=np.uint64)
    after = np.ones(steps, dtype=bool) if updates is None else updates
    first = 0
    for k in range(steps):
        cum, on = model.cumulative(), active[k]
        starts[k, on] = cum[contexts[k, on], symbols[k, on]]
        freqs[k, on] = cum[contexts[k, on], symbols[k, on] + 1] - starts[k, on]
        if after[k]:
            on = active[first:k + 1]
            model.update(contexts[first:k + 1][on], symbols[first:k + 1][on])
            first = k + 1
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


class _Decoder:
    """The rANS decoding state of a stream: one step decodes one symbol per active lane."""

    def __init__(self, data: bytes, count: int, lanes: int, alphabet: int, n_contexts: int,
                 increment: int = 1) -> None:
        if len(data) < 8:
            raise ArchiveError("entropy-coded stream is truncated")
        stored_lanes, total = (int(v) for v in np.frombuffer(data, dtype=HEADER, count=2))
        if stored_lanes != lanes or total != count:
            raise ArchiveError("entropy-coded stream does not match the expected symbol count")
        if len(data) < 8 + 4 * lanes or (len(data) - 8 - 4 * lanes) % 2:
            raise ArchiveError("entropy-coded stream is truncated")
        self.state = np.frombuffer(data, dtype=HEADER, count=lanes, offset=8).astype(np.uint64)
        self.stream = np.frombuffer(data, dtype=WORD, offset=8 + 4 * lanes).astype(np.uint64)
        self.model, self.at = _Model(alphabet, n_contexts, increment), 0

    def step(self, contexts: np.ndarray, active: np.ndarray, update: bool = True) -> np.ndarray:
        cum = self.model.cumulative()
        rows = cum[contexts]  # (lanes, alphabet + 1)
        slot = self.state & np.uint64((1 << PROB_BITS) - 1)
        s = np.count_nonzero(rows[:, 1:] <= slot[:, None], axis=1)
        at = np.arange(rows.shape[0]) * rows.shape[1] + s
        start, end = rows.ravel()[at], rows.ravel()[at + 1]
        if not active.all():  # an inactive lane keeps its state: symbol 0 with probability 1
            s[~active], start[~active], end[~active] = 0, 0, 1 << PROB_BITS
        state = (end - start) * (self.state >> np.uint64(PROB_BITS)) + slot - start
        need = state < STATE_LOW
        n = np.count_nonzero(need)
        if self.at + n > self.stream.size:
            raise ArchiveError("entropy-coded stream is truncated")
        state[need] = (state[need] << np.uint64(16)) | self.stream[self.at:self.at + n]
        self.at += n
        self.state = state
        if update:
            self.model.update(contexts[active], s[active])
        return s

    def close(self) -> None:
        if self.at != self.stream.size or np.any(self.state != STATE_LOW):
            raise ArchiveError("entropy-coded stream is corrupt")


class _Model:
    """Adaptive symbol counts per context, turned into cumulative frequencies summing to 2^PROB_BITS.
    Only the contexts updated since the last call are recomputed."""

    def __init__(self, alphabet: int, n_contexts: int, increment: int = 1) -> None:
        if not 1 <= alphabet <= 1 << (PROB_BITS - 1):
            raise ValueError(f"alphabet must have 1 to {1 << (PROB_BITS - 1)} symbols")
        self.counts = np.ones((n_contexts, alphabet), dtype=np.int64)
        self.increment = increment
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
        n_contexts, alphabet = self.counts.shape
        seen = np.bincount(contexts * alphabet + symbols, minlength=n_contexts * alphabet)
        self.counts += seen.reshape(n_contexts, alphabet) * self.increment
        self.stale = np.flatnonzero(seen.reshape(n_contexts, alphabet).any(axis=1))
        if self.increment > 1:  # adaptive: halve a context's counts when they grow past COUNT_LIMIT
            full = self.stale[self.counts[self.stale].sum(axis=1) > COUNT_LIMIT]
            self.counts[full] = (self.counts[full] + 1) >> 1


def _lanes(count: int) -> int:
    return int(np.clip(count // SYMBOLS_PER_LANE, 1, 4096))


def _chunk_places(chunks: list[int], lanes: int) -> np.ndarray:
    """For every place of the (steps, lanes) grid of `encode_chunks`, the symbol index it holds or −1."""
    places, at = [], 0
    for n in chunks:
        row = np.full(_padded(n, lanes), -1, dtype=np.int64)
        row[:n] = np.arange(at, at + n)
        places.append(row)
        at += n
    return np.concatenate(places) if places else np.empty(0, dtype=np.int64)


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


TOKEN_DIRECT = 16  # integers below this are their own token
TOKEN_MANTISSA = 2  # bits below the highest set bit that go into the token
TOKENS = TOKEN_DIRECT + ((64 - 4) << TOKEN_MANTISSA)  # alphabet of `split_integers` for 64-bit integers


def split_integers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binarise unsigned integers for an adaptive coder.

    u < 16 is its own token. Otherwise, with e the index of u's highest set bit, the token holds e and the
    TOKEN_MANTISSA bits below the highest, and the lower bits travel verbatim: tokens stay below `TOKENS`
    however wide the integers are, and the verbatim bits cost exactly their count.

    Parameters
    ----------
    values : ndarray of uint64

    Returns
    -------
    tokens, extra_count, extra_bits : ndarray
    """
    u = np.asarray(values, dtype=np.uint64).ravel()
    top = _highest_bit(u)
    big = u >= TOKEN_DIRECT
    nbits = np.where(big, top - TOKEN_MANTISSA, 0)
    mantissa = (u >> nbits.astype(np.uint64)) & np.uint64((1 << TOKEN_MANTISSA) - 1)
    tokens = np.where(big, TOKEN_DIRECT + ((top - 4) << TOKEN_MANTISSA) + mantissa.astype(np.int64),
                      u.astype(np.int64))
    extra = u & ((np.uint64(1) << nbits.astype(np.uint64)) - np.uint64(1))
    return tokens, nbits, extra


def token_bits(tokens: np.ndarray) -> np.ndarray:
    """Extra-bit count of each token (see `split_integers`).

    Parameters
    ----------
    tokens : ndarray of int

    Returns
    -------
    ndarray of int
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    return np.where(tokens >= TOKEN_DIRECT, ((tokens - TOKEN_DIRECT) >> TOKEN_MANTISSA) + 4 - TOKEN_MANTISSA, 0)


def join_integers(tokens: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Inverse of `split_integers`.

    Parameters
    ----------
    tokens : ndarray of int
    extra : ndarray
        The extra bits of each token.

    Returns
    -------
    ndarray of uint64
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    big = tokens >= TOKEN_DIRECT
    nbits = token_bits(tokens).astype(np.uint64)
    head = (np.uint64(1 << TOKEN_MANTISSA) | ((tokens - TOKEN_DIRECT) & ((1 << TOKEN_MANTISSA) - 1)).astype(np.uint64))
    return np.where(big, (head << nbits) | np.asarray(extra, dtype=np.uint64), tokens.astype(np.uint64))


def pack_bits(values: np.ndarray, nbits: np.ndarray) -> bytes:
    """The low `nbits[i]` bits of each value, most significant first, concatenated and byte-padded.

    Parameters
    ----------
    values : ndarray of uint64
    nbits : ndarray of int

    Returns
    -------
    bytes
    """
    values, nbits = np.asarray(values, dtype=np.uint64).ravel(), np.asarray(nbits, dtype=np.int64).ravel()
    ends = np.cumsum(nbits)
    bits = np.zeros(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    for b in range(int(nbits.max()) if nbits.size else 0):
        has = nbits > b
        bits[(ends - nbits + b)[has]] = (values[has] >> (nbits[has] - 1 - b).astype(np.uint64)) & np.uint64(1)
    return np.packbits(bits).tobytes()


class BitReader:
    """Reads the fields that `pack_bits` wrote, a group at a time."""

    def __init__(self, data: bytes) -> None:
        self.bits, self.at = np.unpackbits(np.frombuffer(data, dtype=np.uint8)), 0

    def read(self, nbits: np.ndarray) -> np.ndarray:
        """The next group of fields.

        Parameters
        ----------
        nbits : ndarray of int
            Each field's width.

        Returns
        -------
        ndarray of uint64

        Raises
        ------
        ArchiveError
            When the stream is shorter than the fields.
        """
        nbits = np.asarray(nbits, dtype=np.int64).ravel()
        ends = self.at + np.cumsum(nbits)
        if ends.size and ends[-1] > self.bits.size:
            raise ArchiveError("verbatim bit stream is truncated")
        out = np.zeros(nbits.size, dtype=np.uint64)
        for b in range(int(nbits.max()) if nbits.size else 0):
            has = nbits > b
            out[has] = (out[has] << np.uint64(1)) | self.bits[(ends - nbits + b)[has]]
        self.at = int(ends[-1]) if ends.size else self.at
        return out

    def close(self) -> None:
        """Check that no whole byte is left over.

        Raises
        ------
        ArchiveError
            When the stream is longer than its fields.
        """
        if self.bits.size - self.at >= 8:
            raise ArchiveError("verbatim bit stream is longer than its fields")


def _highest_bit(u: np.ndarray) -> np.ndarray:
    """Index of the highest set bit of each uint64 (0 for 0 and 1)."""
    top = np.zeros(u.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        higher = (u >> (top + step).astype(np.uint64)) > 0
        top = np.where(higher, top + step, top)
    return top
