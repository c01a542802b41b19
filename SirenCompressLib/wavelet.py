"""An orthonormal 2D wavelet transform of image stacks as matrix products, in numpy alone.

The transform is Daubechies' least-asymmetric wavelet with 4 vanishing moments ("sym4"; Daubechies, *Ten
Lectures on Wavelets*, SIAM 1992, §8.1) with periodic extension, over up to `LEVELS` levels in the Mallat
layout (the coarsest approximation first, then the details of each level), as PyWavelets' `wavedec2` with
`mode="periodization"` arranges it. Because it is orthonormal, a quantiser step means the same squared error
in every band, so one common step serves the whole image.
"""

from __future__ import annotations

import functools

import numpy as np

# sym4 decomposition low-pass filter
LOW_PASS = np.array([-0.07576571478927333, -0.02963552764599851, 0.49761866763201545, 0.8037387518059161,
                     0.29785779560527736, -0.09921954357684722, -0.012603967262037833, 0.0322231006040427])
HIGH_PASS = LOW_PASS[::-1] * (-1.0) ** np.arange(LOW_PASS.size)
LEVELS = 3


def levels(n: int) -> int:
    """How many levels an axis of `n` samples takes: each level halves an even length of at least 16.

    16 is twice the sym4 filter length; at most `LEVELS` levels.

    Parameters
    ----------
    n : int
        Samples along the axis.

    Returns
    -------
    int
        0 to `LEVELS`.
    """
    count = 0
    while count < LEVELS and n % 2 == 0 and n >= 2 * LOW_PASS.size:
        n //= 2
        count += 1
    return count


@functools.lru_cache(maxsize=16)
def analysis_matrix(n: int) -> np.ndarray:
    """The (n, n) orthogonal matrix of the multi-level transform of one axis (identity when `levels(n)` is 0).

    Parameters
    ----------
    n : int
        Samples along the axis.

    Returns
    -------
    ndarray, shape (n, n)
        Rows: the approximation of the coarsest level, then the details from the coarsest to the finest.
    """
    matrix = np.eye(n)
    size = n
    for _ in range(levels(n)):
        step = _one_level(size)
        matrix[:size] = step @ matrix[:size]
        size //= 2
    return matrix


def forward(images: np.ndarray) -> np.ndarray:
    """The transform of a stack of images (..., x, y): rows and columns.

    Parameters
    ----------
    images : ndarray, shape (..., x, y)

    Returns
    -------
    ndarray, shape (..., x, y), float64
    """
    return _rows_and_columns(analysis_matrix(images.shape[-2]), images, analysis_matrix(images.shape[-1]).T)


def inverse(coefficients: np.ndarray) -> np.ndarray:
    """The inverse of `forward`.

    Parameters
    ----------
    coefficients : ndarray, shape (..., x, y)

    Returns
    -------
    ndarray, shape (..., x, y), float64
    """
    a, b = analysis_matrix(coefficients.shape[-2]), analysis_matrix(coefficients.shape[-1])
    return _rows_and_columns(a.T, coefficients, b)


def _rows_and_columns(left: np.ndarray, images: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ image @ right for every image of the stack, as two large matrix products (a stack of small
    ones is slow, and very slow with several BLAS threads on a busy machine)."""
    x, y = images.shape[-2:]
    columns = (images.reshape(-1, y) @ right).reshape(-1, x, y)
    rows = left @ columns.transpose(1, 0, 2).reshape(x, -1)
    return rows.reshape(x, -1, y).transpose(1, 0, 2).reshape(images.shape)


def _one_level(n: int) -> np.ndarray:
    """(n, n): n/2 low-pass rows then n/2 high-pass rows, each filter shifted by 2 per row, wrapped around."""
    rows = np.zeros((n, n))
    taps = np.arange(LOW_PASS.size)
    for i in range(n // 2):
        np.add.at(rows[i], (2 * i + taps) % n, LOW_PASS)
        np.add.at(rows[n // 2 + i], (2 * i + taps) % n, HIGH_PASS)
    return rows
