"""The numpy side of the coordinate networks every network codec stores: the coordinate grid, the forward
pass, and the weight packing (fp16 + LZMA, or integer weights + LZMA or rANS). Numpy only: decoding never
imports torch.
"""

from __future__ import annotations

import lzma

import numpy as np

from . import entropy
from .errors import ArchiveError
from .quantize import dequantize, quantize

WEIGHT_DTYPE = np.dtype("<f2")
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def layer_activations(activation: str, layers: int) -> list[str]:
    """The activation of each hidden layer: all sine, all relu or tanh, or sine then relu ("sine-relu").

    Parameters
    ----------
    activation : str
        "sine", "relu", "tanh" or "sine-relu".
    layers : int

    Returns
    -------
    list of str
    """
    if activation == "sine-relu":
        return ["sine"] + ["relu"] * (layers - 1)
    return [activation] * layers


def grid(*sizes: int) -> np.ndarray:
    """Pixel coordinates in [−1, 1], both ends included, first axis slowest.

    Parameters
    ----------
    *sizes : int
        The grid's size along each axis.

    Returns
    -------
    ndarray, shape (prod(sizes), len(sizes))
    """
    axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in sizes], indexing="ij")
    return np.stack([a.ravel() for a in axes], axis=1).astype(np.float32)


def forward(arrays: list[np.ndarray], coords: np.ndarray, w0: float, final_activation: str,
            hidden: list[str], chunk: int = 65536) -> np.ndarray:
    """Numpy forward pass in float32, `chunk` rows at a time.

    Sine layers compute sin(w0·(W x + b)), as in SIREN (Sitzmann et al., NeurIPS 2020).

    Parameters
    ----------
    arrays : list of ndarray
        (W, b) of each layer, in evaluation order: the first len(hidden) pairs are hidden layers with those
        activations, the others linear.
    coords : ndarray, shape (N, inputs)
    w0 : float
        The sine frequency.
    final_activation : str
        "identity" or "relu", after the last layer.
    hidden : list of str
        The hidden layers' activations (see `layer_activations`).
    chunk : int
        Rows evaluated at a time.

    Returns
    -------
    ndarray, shape (N, outputs)
    """
    activations = {"sine": lambda z: np.sin(np.float32(w0) * z), "relu": lambda z: np.maximum(z, 0),
                   "tanh": np.tanh}
    params = [a.astype(np.float32) for a in arrays]
    pairs = list(zip(params[0::2], params[1::2]))
    out = []
    for start in range(0, coords.shape[0], chunk):
        h = coords[start:start + chunk]
        for (w, b), kind in zip(pairs, hidden):
            h = activations[kind](h @ w.T + b)
        for w, b in pairs[len(hidden):]:
            h = h @ w.T + b
        out.append(np.maximum(h, 0) if final_activation == "relu" else h)
    return np.concatenate(out, axis=0)


def pack_weights(arrays: list[np.ndarray], bits: int = 16, coder: str = "lzma") -> bytes:
    """Code the (W, b) arrays of a network, in evaluation order.

    bits 16 (lzma only): every array as little-endian fp16, row-major, in one raw LZMA2 stream.
    bits 2–8: every W as integer symbols (per-row symmetric quantisation, see `quantize`), row-major, then
    every W's per-row fp16 scales, then every b as fp16. coder "lzma": the symbols as int8 bytes followed by
    the fp16 bytes, in one raw LZMA2 stream. coder "rans": a uint32 byte count, the symbols (offset by
    2^(bits−1)) in an adaptive rANS stream with one context per W, then the fp16 bytes in an adaptive rANS
    stream with one context for low and one for high bytes (see `entropy`).

    Parameters
    ----------
    arrays : list of ndarray
    bits : int
        16, or 2 to 8.
    coder : str
        "lzma" or "rans".

    Returns
    -------
    bytes
    """
    if bits == 16:
        return _lzma(b"".join(np.ascontiguousarray(a, dtype=WEIGHT_DTYPE).tobytes() for a in arrays))
    coded = [quantize(w, bits) for w in arrays[0::2]]
    side = b"".join([s.astype(WEIGHT_DTYPE).tobytes() for _, s in coded]
                    + [np.asarray(b, dtype=WEIGHT_DTYPE).tobytes() for b in arrays[1::2]])
    if coder == "lzma":
        return _lzma(b"".join(q.astype(np.int8).tobytes() for q, _ in coded) + side)
    symbols = np.concatenate([q.ravel() for q, _ in coded]) + 2 ** (bits - 1)
    layers = np.repeat(np.arange(len(coded)), [q.size for q, _ in coded])
    head = entropy.encode(symbols, 2**bits, layers, len(coded))
    side_bytes = np.frombuffer(side, dtype=np.uint8)
    tail = entropy.encode(side_bytes, 256, np.arange(side_bytes.size) % 2, 2)
    return np.uint32(len(head)).astype("<u4").tobytes() + head + tail


def unpack_weights(member: bytes, shapes: list[tuple[int, int]], bits: int = 16,
                   coder: str = "lzma") -> list[np.ndarray]:
    """Inverse of `pack_weights`; every length is checked.

    Parameters
    ----------
    member : bytes
    shapes : list of (out, in)
        The shape of each W; b has `out` values.
    bits : int
    coder : str

    Returns
    -------
    list of ndarray
        W, b, W, b, ... (dequantized float32 for bits < 16).

    Raises
    ------
    ArchiveError
        For a member that does not hold exactly such a network.
    """
    n_weights = sum(out * inp for out, inp in shapes)
    n_rows = sum(out for out, _ in shapes)
    if bits == 16:
        flat = np.frombuffer(_unlzma(member, 2 * (n_weights + n_rows)), dtype=WEIGHT_DTYPE)
        arrays, offset = [], 0
        for out, inp in shapes:
            for shape in ((out, inp), (out,)):
                n = int(np.prod(shape))
                arrays.append(flat[offset:offset + n].reshape(shape))
                offset += n
        return arrays
    if coder == "lzma":
        raw = _unlzma(member, n_weights + 4 * n_rows)  # 4: fp16 scale + fp16 bias per row
        symbols = np.frombuffer(raw, dtype=np.int8, count=n_weights)
        halves = np.frombuffer(raw, dtype=WEIGHT_DTYPE, offset=n_weights)
    else:
        if len(member) < 4:
            raise ArchiveError("network weights are truncated")
        n_head = int(np.frombuffer(member, dtype="<u4", count=1)[0])
        layers = np.repeat(np.arange(len(shapes)), [out * inp for out, inp in shapes])
        symbols = entropy.decode(member[4:4 + n_head], n_weights, 2**bits, layers, len(shapes)) - 2 ** (bits - 1)
        side = entropy.decode(member[4 + n_head:], 4 * n_rows, 256, np.arange(4 * n_rows) % 2, 2)
        halves = side.astype(np.uint8).view(WEIGHT_DTYPE)
    scales, biases = halves[:n_rows], halves[n_rows:]
    arrays, w_at, r_at = [], 0, 0
    for out, inp in shapes:
        q = symbols[w_at:w_at + out * inp].reshape(out, inp)
        arrays += [dequantize(q, scales[r_at:r_at + out]), biases[r_at:r_at + out].astype(np.float32)]
        w_at, r_at = w_at + out * inp, r_at + out
    return arrays


def _lzma(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def _unlzma(member: bytes, expected: int) -> bytes:
    """Exactly `expected` bytes from a raw LZMA2 stream, else ArchiveError."""
    # A raw LZMA2 stream decodes with any dictionary at least as large as its decompressed length.
    window = [{"id": lzma.FILTER_LZMA2, "dict_size": max(expected, 4096)}]
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=window)
    try:
        raw = decoder.decompress(member, max_length=expected + 1)
    except lzma.LZMAError as exc:
        raise ArchiveError(f"corrupt network weights ({exc})") from None
    if len(raw) != expected:
        raise ArchiveError(f"network weights have {len(raw)} bytes, expected {expected}")
    return raw
