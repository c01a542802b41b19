"""Weight quantisation: per-output-channel symmetric integers with an fp16 scale per channel.

Row i of a weight matrix W (out × in) is stored as integers q_i in [−(2^(b−1)−1), 2^(b−1)−1] and a scale
s_i (fp16): W_i ≈ s_i · q_i. Biases stay fp16. `fake_quantize` is the same rounding in torch with a
straight-through gradient, for quantisation-aware fine-tuning; `dequantize` is all a decoder needs.
"""

from __future__ import annotations

import numpy as np


def levels(bits: int) -> int:
    """Largest integer magnitude at `bits` bits (symmetric, so −0 is never used).

    Parameters
    ----------
    bits : int

    Returns
    -------
    int
    """
    return 2 ** (bits - 1) - 1


def channel_scales(w: np.ndarray, bits: int) -> np.ndarray:
    """fp16 scale per row: max |w| of the row over the largest level (1 for all-zero rows).

    Parameters
    ----------
    w : ndarray, shape (out, in)
    bits : int

    Returns
    -------
    ndarray of float16, shape (out,)
    """
    peak = np.abs(w).max(axis=1)
    scales = (peak / levels(bits)).astype(np.float16)
    return np.where(scales > 0, scales, np.float16(1))


def quantize(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric quantisation of a weight matrix.

    Parameters
    ----------
    w : ndarray, shape (out, in)
    bits : int

    Returns
    -------
    q : ndarray of int32, shape (out, in)
        Integers in [−levels(bits), levels(bits)].
    scales : ndarray of float16, shape (out,)
    """
    scales = channel_scales(w, bits)
    q = np.clip(np.rint(w / scales[:, None].astype(np.float32)), -levels(bits), levels(bits))
    return q.astype(np.int32), scales


def dequantize(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of `quantize` (up to rounding).

    Parameters
    ----------
    q : ndarray, shape (out, in)
    scales : ndarray, shape (out,)

    Returns
    -------
    ndarray of float32, shape (out, in)
    """
    return q.astype(np.float32) * scales.astype(np.float32)[:, None]


def fake_quantize(w, bits: int):
    """Quantisation-aware training: the dequantized weights in the forward pass, identity gradient in the
    backward pass: the straight-through estimator (Bengio, Léonard and Courville, "Estimating or propagating
    gradients through stochastic neurons for conditional computation", arXiv:1308.3432, 2013).

    Parameters
    ----------
    w : torch.Tensor, shape (out, in)
    bits : int

    Returns
    -------
    torch.Tensor
    """
    import torch

    peak = w.detach().abs().amax(dim=1)
    scales = (peak / levels(bits)).half().float()
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.clamp(torch.round(w / scales[:, None]), -levels(bits), levels(bits))
    return w + (q * scales[:, None] - w).detach()
