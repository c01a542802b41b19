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

from functools import lru_cache

import numpy as np

from .errors import ArchiveError

PROB_BITS = 15  # probabilities are multiples of 2^-15
STATE_LOW = 1 << 16  # rANS state in [2^16, 2^32); one 16-bit word moves per renormalisation
HEADER = np.dtype("<u4")
WORD = np.dtype("<u2")
SYMBOLS_PER_LANE = 4096
COUNT_LIMIT = 1 << 16  # counts of a context with an increment above 1 are halved beyond this total
_SLOT_MASK, _PROB_SHIFT, _WORD_SHIFT = np.uint64((1 << PROB_BITS) - 1), np.uint64(PROB_BITS), np.uint64(16)


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
    decoder = _Decoder([data], [count], [lanes], [alphabet], n_contexts)
    contexts = _contexts(contexts, count, n_contexts).reshape(-1, lanes)
    symbols = np.empty(contexts.shape, dtype=np.int64)
    for k, row in enumerate(contexts):
        symbols[k] = decoder.step(row, None)
        decoder.model.update(row, symbols[k])
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


@lru_cache(maxsize=1024)
def _update_steps(n: int, lanes: int, every: int) -> np.ndarray:
    """For the steps of a chunk of `n` symbols: whether the model learns after each (bool, read-only: the
    chunks of a stream are mostly of a few sizes, so the answers are kept)."""
    steps = -(-n // lanes)
    done = np.minimum(np.arange(1, steps + 1) * lanes, n)
    after = np.diff(done // max(every, 1), prepend=0) > 0
    if steps:
        after[-1] = True
    after.flags.writeable = False
    return after


class ChunkDecoder:
    """Reads a stream written by `encode_chunks` chunk by chunk, in the same chunks: `next(contexts)`
    returns the symbols (int64) of a chunk of len(contexts) symbols; `close()` checks that the whole
    stream, `count` symbols in all, was used. (One stream of `ChunkDecoders`.)"""

    def __init__(self, data: bytes, alphabet: int, n_contexts: int, count: int, lanes: int,
                 increment: int = 1, update_every: int = 0) -> None:
        self._decoders = ChunkDecoders([data], [alphabet], n_contexts, [count], [lanes], increment, update_every)

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
        return self._decoders.next([contexts])[0]

    def close(self) -> None:
        """Check that the whole stream was used.

        Raises
        ------
        ArchiveError
            When it was not read to its end.
        """
        self._decoders.close()


class ChunkDecoders:
    """Reads several streams written by `encode_chunks`, a chunk of each at a time, in lock step: every rANS
    step decodes one symbol in each lane of every stream that is still inside its chunk, so that many short
    streams (the slices of a volume) cost the numpy steps of one. Each stream decodes exactly as it would
    alone: it has its own lanes, words, adaptive counts and update schedule."""

    def __init__(self, streams: list[bytes], alphabets: list[int], n_contexts: int, counts: list[int],
                 lanes: list[int], increment: int = 1, update_every: int = 0) -> None:
        self._decoder = _Decoder(streams, counts, lanes, alphabets, n_contexts, increment)
        self._counts, self._lanes, self._every = np.array(counts), np.array(lanes), update_every
        self._read = np.zeros(len(streams), dtype=np.int64)
        self._n_contexts = n_contexts

    def next(self, contexts: list[np.ndarray | None]) -> list[np.ndarray | None]:
        """The symbols of each stream's next chunk.

        Parameters
        ----------
        contexts : list of (ndarray of int or None)
            Per stream, one context per symbol of its chunk, or None when the stream takes no chunk now.

        Returns
        -------
        list of (ndarray of int64 or None)
            Per stream, the chunk's symbols (None where no chunk was asked for).

        Raises
        ------
        ArchiveError
            When a stream holds fewer symbols than asked for, or is truncated.
        ValueError
            For a context out of range.
        """
        decoder, lanes = self._decoder, self._lanes
        taking = [s for s, c in enumerate(contexts) if c is not None]
        sizes = np.zeros(len(contexts), dtype=np.int64)
        for s in taking:
            c = contexts[s] = np.asarray(contexts[s], dtype=np.int64).ravel()
            if c.size and not 0 <= c.min() <= c.max() < self._n_contexts:
                raise ValueError("context out of range")
            sizes[s] = c.size
        if np.any(self._read + sizes > self._counts):
            raise ArchiveError("entropy-coded stream holds fewer symbols than its reader asks for")
        self._read += sizes
        steps = -(-sizes // lanes)
        total = int(steps.max(initial=0))
        rows = np.zeros((total, decoder.lane_stream.size), dtype=np.int64)  # model rows: stream × context
        active = np.zeros(rows.shape, dtype=bool)
        after = np.zeros((total, len(contexts)), dtype=bool)  # the model learns after this step
        for s in taking:
            n, width, at = sizes[s], lanes[s], decoder.lane_start[s]
            padded = np.full(steps[s] * width, -1, dtype=np.int64)
            padded[:n] = contexts[s] + s * self._n_contexts
            block = padded.reshape(steps[s], width)
            rows[:steps[s], at:at + width], active[:steps[s], at:at + width] = block, block >= 0
            after[:steps[s], s] = _update_steps(int(n), int(width), self._every) if self._every else True
        out = np.zeros(rows.shape, dtype=np.int64)
        lane_steps = steps[decoder.lane_stream]
        learns, whole, together = after.any(axis=1), active.all(axis=1), after.all(axis=1)
        first = np.zeros(len(contexts), dtype=np.int64)  # per stream: the first step not yet learnt from
        changes = {0, *lane_steps.tolist()}  # the steps where a chunk ends: fewer lanes are live after them
        level = 0  # every stream has learnt from the steps before this one
        for k in range(total):
            if k in changes:
                live = None if lane_steps.min() > k else np.flatnonzero(lane_steps > k)
                at = slice(None) if live is None else live
            out[k, at] = decoder.step(rows[k, at], None if whole[k] else active[k, at], live)
            if learns[k] and whole[k] and together[k] and level == k:  # the common case: this step, every lane
                decoder.model.update(rows[k], out[k])
                first[:], level = k + 1, k + 1
            elif learns[k]:
                if together[k]:
                    level = k + 1
                start = int(first[after[k]].min())
                learn = active[start:k + 1] & after[k][decoder.lane_stream]
                learn &= np.arange(start, k + 1)[:, None] >= first[decoder.lane_stream]
                decoder.model.update(rows[start:k + 1][learn], out[start:k + 1][learn])
                first[after[k]] = k + 1
        return [None if contexts[s] is None else
                out[:steps[s], decoder.lane_start[s]:decoder.lane_start[s] + lanes[s]].ravel()[:sizes[s]]
                for s in range(len(contexts))]

    def close(self) -> None:
        """Check that every stream was used whole.

        Raises
        ------
        ArchiveError
            When a stream was not read to its end.
        """
        if np.any(self._read != self._counts):
            raise ArchiveError("entropy-coded stream was not read to its end")
        self._decoder.close()


def _encode_grid(symbols: np.ndarray, contexts: np.ndarray, active: np.ndarray, alphabet: int,
                 n_contexts: int, count: int, increment: int = 1, updates: np.ndarray | None = None) -> bytes:
    """rANS-code (steps, lanes) symbols; inactive places are coded with probability 1 (no bits). The model
    learns after every step, or only after the steps where `updates` (bool per step) is set, from all steps
    since the last."""
    steps, lanes = symbols.shape
    model = _Model(np.full(n_contexts, alphabet), increment)
    starts = np.zeros(symbols.shape, dtype=np.uint64)
    freqs = np.full(symbols.shape, 1 << PROB_BITS, dtype=np.uint64)
    after = np.ones(steps, dtype=bool) if updates is None else updates
    first = 0
    ends = np.flatnonzero(after).tolist()  # the steps up to an update (and those after the last) share a model
    if steps and (not ends or ends[-1] != steps - 1):
        ends.append(steps - 1)
    for last in ends:
        cum, on = model.cumulative(), active[first:last + 1]
        c, s = contexts[first:last + 1][on], symbols[first:last + 1][on]
        starts[first:last + 1][on], freqs[first:last + 1][on] = cum[c, s], cum[c, s + 1] - cum[c, s]
        if after[last]:
            model.update(c, s)
        first = last + 1
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
    """The rANS decoding state of one or more streams, their lanes side by side: one step decodes one symbol
    per active lane. The adaptive model has a row per stream and context (stream × n_contexts + context)."""

    def __init__(self, streams: list[bytes], counts: list[int], lanes: list[int], alphabets: list[int],
                 n_contexts: int, increment: int = 1) -> None:
        states, words = [], []
        for data, count, width in zip(streams, counts, lanes):
            if len(data) < 8:
                raise ArchiveError("entropy-coded stream is truncated")
            stored_lanes, total = (int(v) for v in np.frombuffer(data, dtype=HEADER, count=2))
            if stored_lanes != width or total != count:
                raise ArchiveError("entropy-coded stream does not match the expected symbol count")
            if len(data) < 8 + 4 * width or (len(data) - 8 - 4 * width) % 2:
                raise ArchiveError("entropy-coded stream is truncated")
            states.append(np.frombuffer(data, dtype=HEADER, count=width, offset=8))
            words.append(np.frombuffer(data, dtype=WORD, offset=8 + 4 * width))
        self.state = np.concatenate(states).astype(np.uint64)
        self.stream = np.concatenate(words).astype(np.uint64)
        self.lane_stream = np.repeat(np.arange(len(lanes)), lanes)
        self.lane_start = np.concatenate([[0], np.cumsum(lanes)])[:-1].astype(np.int64)
        self.word_start = np.concatenate([[0], np.cumsum([w.size for w in words])]).astype(np.int64)
        self.at = self.word_start[:-1].copy()  # per stream: its next word
        self.model = _Model(np.repeat(alphabets, n_contexts), increment)

    def step(self, rows: np.ndarray, active: np.ndarray | None, lanes: np.ndarray | None = None) -> np.ndarray:
        """Decode one symbol in each of `lanes` (all lanes: None) with the model rows `rows`; a lane that
        `active` (None: all) marks inactive keeps its state (symbol 0 with probability 1)."""
        state = self.state if lanes is None else self.state[lanes]
        slot = state & _SLOT_MASK
        at = self.model.find(rows, slot)
        flat = self.model.cum.ravel()
        s, start, end = at - rows * self.model.cum.shape[1], flat[at], flat[at + 1]
        if active is not None:
            s[~active], start[~active], end[~active] = 0, 0, 1 << PROB_BITS
        state = (end - start) * (state >> _PROB_SHIFT) + slot - start
        need = np.flatnonzero(state < STATE_LOW)
        if need.size:
            if self.at.size == 1:  # one stream: its words in lane order
                where = self.at + np.arange(need.size)
                self.at += need.size
            else:
                owner = self.lane_stream[need if lanes is None else lanes[need]]
                taken = np.bincount(owner, minlength=self.at.size)
                where = self.at[owner] + np.arange(need.size) - (np.cumsum(taken) - taken)[owner]
                self.at += taken
            if np.any(self.at > self.word_start[1:]):
                raise ArchiveError("entropy-coded stream is truncated")
            state[need] = (state[need] << _WORD_SHIFT) | self.stream[where]
        if lanes is None:
            self.state = state
        else:
            self.state[lanes] = state
        return s

    def close(self) -> None:
        if np.any(self.at != self.word_start[1:]) or np.any(self.state != STATE_LOW):
            raise ArchiveError("entropy-coded stream is corrupt")


class _Model:
    """Adaptive symbol counts per context (row), turned into cumulative frequencies summing to 2^PROB_BITS.
    A row's alphabet may be narrower than the table: its symbols beyond it have count and frequency 0.
    Only the rows updated since the last call are recomputed."""

    def __init__(self, alphabets: np.ndarray, increment: int = 1) -> None:
        alphabets = np.asarray(alphabets, dtype=np.int64)
        if alphabets.size and not (1 <= alphabets.min() and alphabets.max() <= 1 << (PROB_BITS - 1)):
            raise ValueError(f"alphabet must have 1 to {1 << (PROB_BITS - 1)} symbols")
        width = int(alphabets.max(initial=1))
        self.alphabets = alphabets
        self.counts = (np.arange(width) < alphabets[:, None]).astype(np.int64)
        self.increment = increment
        # columns to a power of 2 (at least width + 1), the ones past the alphabet at the total: a binary search
        # of a row needs no bounds
        self.cum = np.full((alphabets.size, 1 << width.bit_length()), 1 << PROB_BITS, dtype=np.uint64)
        self.cum[:, 0] = 0
        self.stale = np.arange(alphabets.size)
        self._narrow = self.cum.astype(np.uint16)  # the same, searched faster (PROB_BITS < 16)

    def cumulative(self) -> np.ndarray:
        """(rows, 2^⌈log2(alphabet + 1)⌉) uint64: every symbol of a row's alphabet gets at least 1, the total is
        exactly 2^PROB_BITS (and so are the columns past it)."""
        if self.stale.size:
            counts = self.counts[self.stale]
            spare = (1 << PROB_BITS) - self.alphabets[self.stale, None]
            freq = np.minimum(counts, 1) + counts * spare // counts.sum(axis=1, keepdims=True)
            freq[np.arange(len(counts)), counts.argmax(axis=1)] += (1 << PROB_BITS) - freq.sum(axis=1)
            self.cum[self.stale, 1:freq.shape[1] + 1] = np.cumsum(freq, axis=1)
            self._narrow[self.stale] = self.cum[self.stale]
            self.stale = self.stale[:0]
        return self.cum

    def find(self, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Per (row, slot): the flat index into `cumulative()` of the row's largest s with cum[row, s] <= slot
        (slot < 2^PROB_BITS), the symbol whose interval holds the slot: a binary search of every row at once."""
        self.cumulative()
        narrow, slots = self._narrow.ravel(), slots.astype(np.uint16)
        width = self._narrow.shape[1]
        at = rows * width
        for bit in reversed(range(width.bit_length() - 1)):  # the width is a power of 2
            at += (narrow[at + (1 << bit)] <= slots) * (1 << bit)
        return at

    def update(self, rows: np.ndarray, symbols: np.ndarray) -> None:
        n_rows, alphabet = self.counts.shape
        if rows.size * alphabet < self.counts.size:  # a few symbols (a step of few lanes): touch their places only
            np.add.at(self.counts, (rows, symbols), self.increment)
            changed = np.unique(rows)
        else:
            seen = np.bincount(rows * alphabet + symbols, minlength=n_rows * alphabet).reshape(n_rows, alphabet)
            seen *= self.increment
            self.counts += seen
            changed = np.flatnonzero(np.bincount(rows, minlength=n_rows))
        self.stale = np.union1d(self.stale, changed) if self.stale.size else changed
        if self.increment > 1:  # adaptive: halve a row's counts when they grow past COUNT_LIMIT
            full = changed[self.counts[changed].sum(axis=1) > COUNT_LIMIT]
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
    """Reads the fields that `pack_bits` wrote, a group at a time, from one stream or from several side by
    side (each read then names the stream of every field)."""

    def __init__(self, data: bytes | list[bytes]) -> None:
        streams = [data] if isinstance(data, bytes) else data
        sizes = 8 * np.array([len(d) for d in streams], dtype=np.int64)
        # per byte of the streams: the big-endian 32-bit word from it (zeros past the end), where every field of
        # up to 25 bits that starts in that byte lies
        octets = np.frombuffer(b"".join(streams) + bytes(3), dtype=np.uint8).astype(np.uint32)
        self.words = (octets[:-3] << 24) | (octets[1:-2] << 16) | (octets[2:-1] << 8) | octets[3:]
        self.ends = np.cumsum(sizes)
        self.at = self.ends - sizes  # per stream: its next bit

    def read(self, nbits: np.ndarray, streams: np.ndarray | None = None) -> np.ndarray:
        """The next group of fields.

        Parameters
        ----------
        nbits : ndarray of int
            Each field's width.
        streams : ndarray of int or None
            Each field's stream, in non-decreasing order (None: all from the first).

        Returns
        -------
        ndarray of uint64

        Raises
        ------
        ArchiveError
            When a stream is shorter than its fields.
        """
        nbits = np.asarray(nbits, dtype=np.int64).ravel()
        streams = np.zeros(nbits.size, dtype=np.int64) if streams is None else np.asarray(streams, dtype=np.int64)
        taken = np.bincount(streams, weights=nbits, minlength=self.at.size).astype(np.int64)
        if np.any(self.at + taken > self.ends):
            raise ArchiveError("verbatim bit stream is truncated")
        starts = np.cumsum(nbits) - nbits + (self.at - (np.cumsum(taken) - taken))[streams]
        self.at += taken
        return self._fields(starts, nbits)

    def _fields(self, starts: np.ndarray, nbits: np.ndarray) -> np.ndarray:
        """The fields of `nbits` bits (0 to 64) from bit `starts`, most significant first: each from the
        32-bit word at its first byte (wider ones, above 25 bits, in parts)."""
        out = np.zeros(nbits.size, dtype=np.uint64)
        wide = nbits > 25
        if wide.any():
            low = np.full(int(wide.sum()), 25)
            out[wide] = ((self._fields(starts[wide], nbits[wide] - low) << np.uint64(25))
                         | self._fields(starts[wide] + nbits[wide] - low, low))
        some = np.flatnonzero((nbits > 0) & ~wide)
        if some.size == nbits.size:
            some = slice(None)
        first, width = starts[some], nbits[some].astype(np.uint32)
        words = self.words[first >> 3] << (first & 7).astype(np.uint32)
        out[some] = words >> (np.uint32(32) - width)
        return out

    def close(self) -> None:
        """Check that no stream has a whole byte left over.

        Raises
        ------
        ArchiveError
            When a stream is longer than its fields.
        """
        if np.any(self.ends - self.at >= 8):
            raise ArchiveError("verbatim bit stream is longer than its fields")


def _highest_bit(u: np.ndarray) -> np.ndarray:
    """Index of the highest set bit of each uint64 (0 for 0 and 1)."""
    top = np.zeros(u.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        higher = (u >> (top + step).astype(np.uint64)) > 0
        top = np.where(higher, top + step, top)
    return top
