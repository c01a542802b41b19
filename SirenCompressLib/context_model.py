"""A learned entropy model for stacks of integer maps: a small network, trained on the data at encode time,
picks each symbol's context for the adaptive rANS coder (`entropy.encode_chunks`) from what is decoded already.

The maps of a stack (K, x, y) are coded one after the other; each map in two passes over a checkerboard
(the "anchor" squares first, then the others, as in He et al., "Checkerboard context model for efficient
learned image compression", CVPR 2021), so that a whole pass is one vectorised step of the coder. The
features of a symbol are sums of log-magnitudes of decoded symbols: the 3×3 neighbourhood in the previous
map, in the previous `HISTORY` maps, the same place in the previous map, and (second pass) the four anchor
neighbours in its own map. A network with one hidden layer of ReLU units (and a learned bias per map index
and pass) maps them to an estimate of the symbol's log-magnitude; that estimate, cut into `CONTEXTS` bins,
is the context, whose symbol counts the coder adapts as it goes. Like Cool-chic (Ladune et al., "COOL-CHIC:
Coordinate-based low complexity hierarchical image codec", ICCV 2023), the network is trained on the data it
codes and stored with it; it is evaluated in integer arithmetic, so that every machine derives the same
contexts and decodes the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArchiveError

LOG_SCALE = 16  # log-magnitudes in 1/16 of a bit
LOG_TABLE = np.floor(LOG_SCALE * np.log2(1.0 + np.arange(4096))).astype(np.int64)  # exact at powers of 2
HISTORY = 6  # earlier maps summed into one feature
FEATURES = 4
MAP_BUCKETS = 16  # maps 0..14 have their own bias, the rest share one
BUCKETS = 2 * MAP_BUCKETS  # × the two passes
CONTEXTS = 40
BINS_PER_BIT = 4  # contexts per bit of predicted log-magnitude
INPUT_SHIFT = 14  # first-layer weights and biases in 1/2^14
HIDDEN_SHIFT = 6  # hidden units kept in 1/2^6 after the first layer
OUTPUT_SHIFT = 8  # output weights in 1/2^8
WEIGHT_LIMIT = (1 << 15) - 1  # |weight| as stored (int16)
MAX_HIDDEN = 64  # hidden units, as the transform codec's --context-units allows


@dataclass(frozen=True)
class Network:
    """The integer network: `w1` (hidden, FEATURES), `b1` (hidden,), `w2` (hidden,), `b2` (BUCKETS,), all int64
    in the fixed-point units of the module constants (`b2` in 1/16 of a bit of log-magnitude)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @property
    def hidden(self) -> int:
        """The number of hidden units."""
        return self.w2.size

    def to_bytes(self) -> bytes:
        """uint8 hidden count, then w1, b1, w2, b2 as little-endian int16."""
        values = np.concatenate([self.w1.ravel(), self.b1, self.w2, self.b2])
        return bytes([self.hidden]) + values.astype("<i2").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[Network, int]:
        """The network stored at the start of `data`, and the number of bytes it took.

        Raises
        ------
        ArchiveError
            When the bytes are too few or the hidden units are not 1 to MAX_HIDDEN.
        """
        if not data:
            raise ArchiveError("entropy model is missing")
        hidden = data[0]
        if not 1 <= hidden <= MAX_HIDDEN:
            raise ArchiveError(f"entropy model has {hidden} hidden units, not 1 to {MAX_HIDDEN}")
        count = hidden * (FEATURES + 2) + BUCKETS
        if len(data) < 1 + 2 * count:
            raise ArchiveError("entropy model is truncated")
        values = np.frombuffer(data, dtype="<i2", count=count, offset=1).astype(np.int64)
        w1, b1, w2, b2 = np.split(values, np.cumsum([hidden * FEATURES, hidden, hidden]))
        return cls(w1.reshape(hidden, FEATURES), b1, w2, b2), 1 + 2 * count


def log_magnitude(symbols: np.ndarray) -> np.ndarray:
    """⌊16·log2(1 + |q|)⌋ of integer symbols (|q| capped at 4095), int64.

    Parameters
    ----------
    symbols : ndarray of int

    Returns
    -------
    ndarray of int64
        The same shape; log-magnitudes in 1/16 of a bit (`LOG_SCALE`), 0 to 192.
    """
    return LOG_TABLE[np.minimum(np.abs(symbols), LOG_TABLE.size - 1)]


def anchors(nx: int, ny: int) -> np.ndarray:
    """(nx, ny) bool: the checkerboard squares coded in the first pass.

    The anchors of He et al.'s checkerboard context model (CVPR 2021): the places whose x + y is even.

    Parameters
    ----------
    nx, ny : int
        The map's size.

    Returns
    -------
    ndarray, shape (nx, ny), bool
    """
    return (np.add.outer(np.arange(nx), np.arange(ny)) % 2) == 0


def _bordered(a: np.ndarray) -> np.ndarray:
    """`a` with a border of one zero around its last two axes."""
    p = np.zeros(a.shape[:-2] + (a.shape[-2] + 2, a.shape[-1] + 2), dtype=a.dtype)
    p[..., 1:-1, 1:-1] = a
    return p


def box3(a: np.ndarray) -> np.ndarray:
    """Sum over the 3×3 neighbourhood of each place of the last two axes (zero outside).

    Parameters
    ----------
    a : ndarray, shape (..., x, y)
        Integer maps (int64, or float64 holding integers: exact).

    Returns
    -------
    ndarray, shape (..., x, y)
        In `a`'s dtype; each place's own value included.
    """
    p = _bordered(a)
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def cross4(a: np.ndarray) -> np.ndarray:
    """Sum of the four edge neighbours of each place of the last two axes (zero outside).

    Parameters
    ----------
    a : ndarray, shape (..., x, y)
        Integer maps (int64, or float64 holding integers: exact).

    Returns
    -------
    ndarray, shape (..., x, y)
        In `a`'s dtype; the place's own value not included.
    """
    p = _bordered(a)
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


class Features:
    """The features of the next map's symbols, from the log-magnitudes of the maps decoded so far.

    `of(first_pass, own)` gives the features of the pass's places (`anchors`, or the others), (..., FEATURES, m)
    float64 holding integers, in row-major order of the places, and the pass's bucket; `own` holds the
    log-magnitudes of that map's anchors (zero elsewhere) for the second pass. `add(L)` appends a decoded map.
    The maps may carry leading axes (..., x, y): several stacks of maps side by side.
    """

    def __init__(self, shape: tuple) -> None:
        first = anchors(*shape[-2:]).ravel()
        self.places = (np.flatnonzero(first), np.flatnonzero(~first))
        self.recent: list[np.ndarray] = []  # box3 of the last HISTORY maps
        self.history = np.zeros(shape)  # their sum: box3 of the sum of the maps
        self.known = [np.zeros(shape[:-2] + (FEATURES, p.size)) for p in self.places]
        self.count = 0

    def add(self, log_map: np.ndarray) -> None:
        log_map = np.asarray(log_map, dtype=np.float64)
        boxed = box3(log_map)
        self.recent.append(boxed)
        self.history = self.history + boxed - (self.recent.pop(0) if len(self.recent) > HISTORY else 0)
        self.known = [np.zeros(log_map.shape[:-2] + (FEATURES, p.size)) for p in self.places]
        for row, values in enumerate((boxed, self.history, log_map)):
            self.split(values, self.known[0][..., row, :], self.known[1][..., row, :])
        self.count += 1

    def of(self, first_pass: bool, own: np.ndarray | None) -> tuple[np.ndarray, int]:
        features = self.known[0 if first_pass else 1]
        if not first_pass:
            inplane = cross4(np.asarray(own, dtype=np.float64))
            self.split(inplane, None, features[..., FEATURES - 1, :])
        bucket = 2 * min(self.count, MAP_BUCKETS - 1) + (0 if first_pass else 1)
        return features, bucket

    def split(self, maps: np.ndarray, first: np.ndarray | None, second: np.ndarray | None) -> None:
        """Copy the values of maps (..., x, y) at the anchors into `first` (..., m) and at the others into `second`,
        each in row-major order of the places (None: not wanted)."""
        nx, ny = maps.shape[-2:]
        lead = maps.shape[:-2]
        if nx % 2 or ny % 2:
            flat = maps.reshape(lead + (-1,))
            for out, places in zip((first, second), self.places):
                if out is not None:
                    out[...] = flat[..., places]
            return
        quads = maps.reshape(lead + (nx // 2, 2, ny // 2, 2))  # row pair, row in pair, column pair, column in pair
        for out, column in ((first, 0), (second, 1)):  # anchors: x + y even
            if out is not None:
                rows = out.view()
                rows.shape = lead + (nx // 2, 2, ny // 2)  # a view of `out` (this raises where it cannot be)
                rows[..., 0, :] = quads[..., 0, :, column]
                rows[..., 1, :] = quads[..., 1, :, 1 - column]


def contexts(network: Network, features: np.ndarray, bucket: int) -> np.ndarray:
    """Each symbol's context in [0, CONTEXTS) from its features — exact integer arithmetic.

    The products and sums are carried in float64, where every value here is an integer below 2^53 and so
    exact (BLAS speed, the same result in any order of summation); the shifts are floors.

    Parameters
    ----------
    network : Network
        One network, or several stacked by `stack` (leading axis: one per stack of features).
    features : ndarray, shape (FEATURES, n) or (networks, FEATURES, n), integers (float64 is used as it is)
    bucket : int
        The map's bucket (its index, capped, and the pass).

    Returns
    -------
    ndarray, shape (n,) or (networks, n), int64
    """
    first_scale, second_scale = 2.0 ** (HIDDEN_SHIFT - INPUT_SHIFT), 2.0 ** -(HIDDEN_SHIFT + OUTPUT_SHIFT)
    w1, b1 = np.asarray(network.w1) * first_scale, np.asarray(network.b1) * first_scale  # powers of 2: exact
    hidden = w1 @ np.asarray(features, dtype=np.float64)
    hidden += b1[..., None]
    np.maximum(hidden, 0, out=hidden)
    np.floor(hidden, out=hidden)
    out = np.floor((np.asarray(network.w2)[..., None, :] * second_scale @ hidden)[..., 0, :])
    out = out.astype(np.int64) + np.asarray(network.b2[..., bucket])[..., None]
    return np.clip(out * BINS_PER_BIT // LOG_SCALE, 0, CONTEXTS - 1)


def stack(networks: list[Network]) -> Network:
    """Several networks as one whose arrays have a leading axis (hidden units padded with zero weights, which
    add nothing), for `contexts` over as many stacks of features at once.

    Parameters
    ----------
    networks : list of Network

    Returns
    -------
    Network
        `w1` (networks, hidden, FEATURES), `b1` and `w2` (networks, hidden), `b2` (networks, BUCKETS).
    """
    hidden = max(n.hidden for n in networks)

    def padded(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, hidden - a.shape[0])] + [(0, 0)] * (a.ndim - 1))

    return Network(*(np.stack([padded(getattr(n, name)) for n in networks]) for name in ("w1", "b1", "w2")),
                   np.stack([n.b2 for n in networks]))


def train(features: np.ndarray, buckets: np.ndarray, targets: np.ndarray, hidden: int = 12, steps: int = 250,
          seed: int = 0, samples: int = 50_000) -> Network:
    """Fit the network to predict log-magnitudes (least squares, Adam), then round it to integers.

    Adam is Kingma and Ba's optimiser ("Adam: a method for stochastic optimization", ICLR 2015), here full-batch
    on the chosen subset, learning rate 0.03; the weights are clipped to int16 after rounding.

    Parameters
    ----------
    features : ndarray, shape (n, FEATURES), int64
    buckets : ndarray, shape (n,), int64
    targets : ndarray, shape (n,)
        The symbols' log-magnitudes (`log_magnitude`).
    hidden : int
        Hidden units, 1 to 64 (`MAX_HIDDEN`; `Network.from_bytes` refuses more).
    steps : int
        Adam steps over a random subset of at most `samples` symbols (0: the untrained initial network).
    seed : int
        Seeds the subset and the initial weights.
    samples : int
        Most symbols trained on.

    Returns
    -------
    Network
    """
    import torch

    rng = np.random.default_rng(seed)
    pick = rng.choice(features.shape[0], min(samples, features.shape[0]), replace=False)
    scale = np.maximum(features[pick].std(axis=0), 1.0)
    x = torch.tensor(features[pick] / scale, dtype=torch.float32)
    b = torch.tensor(buckets[pick])
    y = torch.tensor(targets[pick] / LOG_SCALE, dtype=torch.float32)  # in bits
    generator = torch.Generator().manual_seed(seed)
    w1 = torch.nn.Parameter(torch.randn(hidden, FEATURES, generator=generator) / FEATURES ** 0.5)
    b1 = torch.nn.Parameter(torch.full((hidden,), 0.1))
    w2 = torch.nn.Parameter(torch.randn(hidden, generator=generator) / hidden ** 0.5)
    b2 = torch.nn.Parameter(torch.full((BUCKETS,), float(y.mean())))
    optimiser = torch.optim.Adam([w1, b1, w2, b2], lr=0.03)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights on every run (threads summed some gradients in varying order)
    try:
        for _ in range(steps):
            optimiser.zero_grad()
            loss = torch.mean((torch.relu(x @ w1.T + b1) @ w2 + b2[b] - y) ** 2)
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    # in integers: hidden = relu(w1·f + b1) in 1/2^14, kept in 1/2^6; w2 in 1/2^8 of 1/16 bit, b2 in 1/16 bit
    parts = [w1.detach().numpy() / scale * (1 << INPUT_SHIFT), b1.detach().numpy() * (1 << INPUT_SHIFT),
             w2.detach().numpy() * LOG_SCALE * (1 << OUTPUT_SHIFT), b2.detach().numpy() * LOG_SCALE]
    return Network(*(np.clip(np.rint(p), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int64) for p in parts))
