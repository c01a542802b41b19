"""Classical codec baselines (imagecodecs) on integer 4D data, sized to match a target number of bytes.

Layouts: "per-image" codes each 2D image (one slice of one volume) on its own; "tiled" puts all volumes
of a slice side by side in one mosaic image per slice, so the codec sees them together. "KLT + codec"
decorrelates the volumes of each slice first (PCA; mean and basis stored as fp16) and codes the leading
component maps, all with the same quantiser step, keeping the number of components that does best.
"HEVC 12-bit" codes the volumes of each slice as the frames of one video (x265 through PyAV).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass
class Coded:
    """A baseline's result: total bytes, the decoded array, and the codec parameter used."""

    name: str
    nbytes: int
    decoded: np.ndarray
    parameter: float | None = None


@dataclass(frozen=True)
class Search:
    """The range [low, high] of a codec's quality parameter, as `at_size` bisects it."""

    low: float
    high: float
    larger_is_bigger: bool  # does a larger parameter give more bytes?
    logarithmic: bool


@dataclass(frozen=True)
class ImageCodec:
    """A lossy 2D codec for uint16 images, with one quality parameter."""

    name: str
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    search: Search


def _jpeg2000() -> ImageCodec:
    import imagecodecs

    return ImageCodec("JPEG 2000", lambda im, q: imagecodecs.jpeg2k_encode(im, level=q), imagecodecs.jpeg2k_decode,
                      Search(1.0, 200.0, True, False))


def _htj2k() -> ImageCodec:
    import imagecodecs

    return ImageCodec("HTJ2K", lambda im, q: imagecodecs.htj2k_encode(im, level=q), imagecodecs.htj2k_decode,
                      Search(1e-6, 1.0, False, True))


def _jpegxl() -> ImageCodec:
    """JPEG XL on the image scaled to [0, 1] floats (its nominal range); decoded back to uint16."""
    import imagecodecs

    def encode(image: np.ndarray, distance: float) -> bytes:
        return imagecodecs.jpegxl_encode(image.astype(np.float32) / 65535.0, distance=distance, effort=7)

    def decode(code: bytes) -> np.ndarray:
        return np.clip(np.rint(imagecodecs.jpegxl_decode(code) * 65535.0), 0, 65535).astype(np.uint16)

    return ImageCodec("JPEG XL", encode, decode, Search(0.01, 25.0, False, True))


IMAGE_CODECS: dict[str, Callable[[], ImageCodec]] = {"JPEG 2000": _jpeg2000, "HTJ2K": _htj2k, "JPEG XL": _jpegxl}


def gzip_coded(data: np.ndarray, level: int = 6) -> Coded:
    """gzip of the raw voxel bytes in the array's own byte order (lossless).

    Parameters
    ----------
    data : ndarray
        Any array; its buffer is compressed as `data.tobytes()` gives it.
    level : int
        gzip's compression level, 0 to 9.

    Returns
    -------
    Coded
        Named "gzip -<level>", with the compressed size (header timestamp fixed at 0) and `data` itself as
        the decoded array.
    """
    return Coded(f"gzip -{level}", len(gzip.compress(data.tobytes(), compresslevel=level, mtime=0)), data)


def code_images(data: np.ndarray, codec: ImageCodec, parameter: float, layout: str) -> Coded:
    """Code every slice of integer `data` (x, y, z, v) with `codec` at `parameter`, in `layout`.

    The data are shifted to start at 0 and (for JPEG XL) spread over the full 16-bit range, as the
    codecs expect unsigned images; the shift and scale cost 8 bytes, counted.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels spanning at most 16 bits.
    codec : ImageCodec
    parameter : float
        The codec's quality parameter (see `ImageCodec.search` for its range).
    layout : str
        "per-image": each (x, y) image on its own; anything else ("tiled"): the v images of each slice in one
        `mosaic`.

    Returns
    -------
    Coded
        Total bytes of every image's code plus 8, and the decoded data, rounded and clipped to the input's
        range, in its dtype.
    """
    lo, hi = int(data.min()), int(data.max())
    scale = 65535.0 / max(hi - lo, 1) if codec.name == "JPEG XL" else 1.0
    unsigned = np.rint((data.astype(np.float64) - lo) * scale).astype(np.uint16)
    decoded = np.empty(data.shape, dtype=np.float64)
    nbytes = 8
    for z in range(data.shape[2]):
        images = [unsigned[:, :, z, v] for v in range(data.shape[3])] if layout == "per-image" \
            else [mosaic(unsigned[:, :, z])]
        out = []
        for image in images:
            code = codec.encode(np.ascontiguousarray(image), parameter)
            nbytes += len(code)
            out.append(codec.decode(code))
        decoded[:, :, z] = np.stack(out, axis=-1) if layout == "per-image" else unmosaic(out[0], data.shape[3])
    restored = np.clip(np.rint(decoded / scale + lo), lo, hi).astype(data.dtype)
    return Coded(f"{codec.name} {layout}", nbytes, restored, parameter)


def at_size(code: Callable[[float], Coded], search: Search, target_bytes: int, tolerance: float = 0.01,
            steps: int = 30) -> Coded:
    """Bisect the codec parameter until `code(parameter)` is within `tolerance` of the target size;
    otherwise the largest result not above the target (or the last tried).

    Plain bisection on [search.low, search.high] (on the logarithm of the parameter when `search.logarithmic`),
    assuming the size is monotone in the parameter in the direction `search.larger_is_bigger` gives.

    Parameters
    ----------
    code : callable
        Parameter (float) → `Coded`.
    search : Search
        The parameter's range and direction.
    target_bytes : int
    tolerance : float
        Relative size tolerance: |bytes − target| ≤ tolerance × target ends the search.
    steps : int
        Most calls of `code`.

    Returns
    -------
    Coded
        The first result within tolerance; else the largest tried that is not above the target; else (all
        too large) the last tried.
    """
    lo, hi = (math.log(search.low), math.log(search.high)) if search.logarithmic else (search.low, search.high)
    best = last = None
    for _ in range(steps):
        middle = (lo + hi) / 2
        last = code(math.exp(middle) if search.logarithmic else middle)
        if abs(last.nbytes - target_bytes) <= tolerance * target_bytes:
            return last
        if last.nbytes <= target_bytes and (best is None or last.nbytes > best.nbytes):
            best = last
        too_big = last.nbytes > target_bytes
        if too_big == search.larger_is_bigger:
            hi = middle
        else:
            lo = middle
    return best if best is not None else last


def images_at_size(data: np.ndarray, target_bytes: int, codec_name: str, layout: str,
                   tolerance: float = 0.01) -> Coded:
    """`code_images` with the named codec's quality parameter bisected to `target_bytes` (see `at_size`).

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    target_bytes : int
    codec_name : str
        A key of `IMAGE_CODECS`: "JPEG 2000", "HTJ2K" or "JPEG XL".
    layout : str
        "per-image" or "tiled" (see `code_images`).
    tolerance : float
        Relative size tolerance.

    Returns
    -------
    Coded

    Raises
    ------
    KeyError
        For a codec name not in `IMAGE_CODECS`.
    """
    codec = IMAGE_CODECS[codec_name]()
    return at_size(lambda p: code_images(data, codec, p, layout), codec.search, target_bytes, tolerance)


def jpeg2000_at_size(data: np.ndarray, target_bytes: int, layout: str, tolerance: float = 0.01) -> Coded:
    """`images_at_size` with JPEG 2000.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    target_bytes : int
    layout : str
        "per-image" or "tiled" (see `code_images`).
    tolerance : float
        Relative size tolerance.

    Returns
    -------
    Coded
    """
    return images_at_size(data, target_bytes, "JPEG 2000", layout, tolerance)


HEVC_BITS = 12
HEVC_CRF = Search(-24.0, 51.0, False, False)  # x265's constant rate factor; below 0 at 12 bits (QP offset 24)


def hevc(data: np.ndarray, crf: float) -> Coded:
    """Each axial slice of integer `data` (x, y, z, v) as one 12-bit grey HEVC video whose frames are its
    volumes: x265 through PyAV (preset slow, tune psnr, no settings SEI) at constant rate factor `crf`,
    decoded back from the coded bytes by PyAV's HEVC decoder.

    The data are shifted to start at 0 and scaled to span the 12 bits (the name gives the scale: scaling up
    keeps the decoded integers exact at the finest quantiser steps, and lets x265, whose rate factor stops at
    QP 0, reach larger sizes: CR 7.8 instead of 10.5 on the real sample). Frames are padded with edge values
    to what x265 takes, at least 16 and a multiple of 8 pixels, and cropped back. Counted: every slice's HEVC
    stream, 4 bytes for its length, 8 for the shift and scale.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    crf : float
        x265's constant rate factor, -24 to 51 at 12 bits (lower: more bytes).

    Returns
    -------
    Coded
    """
    lo, hi = int(data.min()), int(data.max())
    top = (1 << HEVC_BITS) - 1
    scale = top / max(hi - lo, 1)
    unsigned = np.rint((data.astype(np.float64) - lo) * scale).astype(np.uint16)
    nx, ny, nz, _ = data.shape
    pad = [(0, max(16, -(-n // 8) * 8) - n) for n in (nx, ny)]
    frames = np.pad(unsigned, pad + [(0, 0), (0, 0)], mode="edge")
    decoded = np.empty(data.shape, dtype=np.float64)
    nbytes = 8 + 4 * nz
    for z in range(nz):
        stream = _x265(frames[:, :, z], crf)
        nbytes += len(stream)
        decoded[:, :, z] = _hevc_decode(stream)[:nx, :ny]
    restored = np.clip(np.rint(decoded / scale + lo), lo, hi).astype(data.dtype)
    return Coded(f"HEVC {HEVC_BITS}-bit, CRF {crf:.2f}, range ×{scale:.4g}", nbytes, restored, crf)


def hevc_at_size(data: np.ndarray, target_bytes: int, tolerance: float = 0.01) -> Coded:
    """`hevc` with its rate factor bisected to `target_bytes` (within `tolerance` when reachable).

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    target_bytes : int
    tolerance : float
        Relative size tolerance.

    Returns
    -------
    Coded
    """
    return at_size(lambda crf: hevc(data, crf), HEVC_CRF, target_bytes, tolerance)


def _x265(frames: np.ndarray, crf: float) -> bytes:
    """The HEVC stream (Annex B) of 12-bit frames (height, width, frames), uint16."""
    import av

    encoder = av.CodecContext.create("libx265", "w")
    encoder.height, encoder.width = frames.shape[:2]
    encoder.pix_fmt = f"gray{HEVC_BITS}le"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "slow", "tune": "psnr", "x265-params": f"crf={crf:.4f}:info=0:log-level=error"}
    packets = []
    for v in range(frames.shape[2]):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[:, :, v]), format=encoder.pix_fmt)
        frame.pts = v
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return b"".join(bytes(packet) for packet in packets)


def _hevc_decode(stream: bytes) -> np.ndarray:
    """The frames of an HEVC stream, (height, width, frames)."""
    import av

    decoder = av.CodecContext.create("hevc", "r")
    frames = [f for packet in decoder.parse(stream) + decoder.parse(None) for f in decoder.decode(packet)]
    frames += decoder.decode(None)
    return np.stack([f.to_ndarray() for f in frames], axis=-1)


def klt(data: np.ndarray, codec: ImageCodec, parameter: float, components: int) -> Coded:
    """Per slice: PCA over the volumes, mean and basis in fp16, the `components` leading coefficient maps
    coded as uint16 images with one common quantiser step (so every map gets the same absolute error).

    The transform is the classical Karhunen–Loève transform (principal components from the SVD of the slice's
    mean-free voxels × volumes matrix). The step maps the widest coefficient range onto 0..65535; each map is
    shifted by its own minimum. Counted: every map's code, the fp16 mean and basis and the fp32 offsets and step.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    codec : ImageCodec
    parameter : float
        The codec's quality parameter.
    components : int
        Leading components coded per slice (at most v are used).

    Returns
    -------
    Coded
        The decoded data rounded and clipped to the input's range, in its dtype.
    """
    nx, ny, nz, nv = data.shape
    k = min(components, nv)
    decoded = np.empty(data.shape, dtype=np.float64)
    nbytes = 0
    for z in range(nz):
        x = data[:, :, z].reshape(nx * ny, nv).astype(np.float64)
        mean = x.mean(axis=0).astype(np.float16).astype(np.float64)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        basis = vt[:k].astype(np.float16).astype(np.float64)
        coefficients = (x - mean) @ basis.T
        offset = coefficients.min(axis=0)
        step = max(float(np.ptp(coefficients, axis=0).max()) / 65535.0, 1e-12)
        maps = np.rint((coefficients - offset) / step).astype(np.uint16)
        nbytes += 2 * (nv + k * nv) + 4 * (k + 1)  # fp16 mean and basis; fp32 offsets and step
        restored = np.empty_like(coefficients)
        for c in range(k):
            code = codec.encode(np.ascontiguousarray(maps[:, c].reshape(nx, ny)), parameter)
            nbytes += len(code)
            restored[:, c] = codec.decode(code).reshape(-1).astype(np.float64) * step + offset[c]
        decoded[:, :, z] = (restored @ basis + mean).reshape(nx, ny, nv)
    lo, hi = data.min(), data.max()
    restored = np.clip(np.rint(decoded), lo, hi).astype(data.dtype)
    return Coded(f"KLT + {codec.name}", nbytes, restored, parameter)


def klt_at_size(data: np.ndarray, target_bytes: int, codec_name: str = "JPEG 2000",
                components: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 80, 103), tolerance: float = 0.01) -> Coded:
    """The best (lowest MSE) KLT result at the target size over the given numbers of components.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, v)
        Integer voxels.
    target_bytes : int
    codec_name : str
        A key of `IMAGE_CODECS`.
    components : tuple of int
        Numbers of components to try (each capped at v); one `at_size` search each.
    tolerance : float
        Relative size tolerance; a result above (1 + tolerance) × target is left out.

    Returns
    -------
    Coded or None
        Named with its number of components; None when no number of components fits the target.

    Raises
    ------
    KeyError
        For a codec name not in `IMAGE_CODECS`.
    """
    codec = IMAGE_CODECS[codec_name]()
    best, best_mse = None, math.inf
    for k in sorted({min(k, data.shape[3]) for k in components}):
        coded = at_size(lambda p, k=k: klt(data, codec, p, k), codec.search, target_bytes, tolerance)
        if coded.nbytes > (1 + tolerance) * target_bytes:
            continue  # even the coarsest quality does not fit with k components
        mse = float(np.mean((coded.decoded.astype(np.float64) - data) ** 2))
        if mse < best_mse:
            best, best_mse = Coded(f"{coded.name} ({k} components)", coded.nbytes, coded.decoded, coded.parameter), mse
    return best


def mosaic(slice_xyv: np.ndarray) -> np.ndarray:
    """Tile the V images (x, y) of one slice into a near-square grid, zero-padded.

    Parameters
    ----------
    slice_xyv : ndarray, shape (x, y, v)

    Returns
    -------
    ndarray, shape (rows × x, cols × y)
        Image v at grid row v // cols, column v % cols, with cols = ⌈√v⌉ and rows = ⌈v / cols⌉; the same dtype.
    """
    nx, ny, nv = slice_xyv.shape
    cols = math.ceil(math.sqrt(nv))
    rows = math.ceil(nv / cols)
    out = np.zeros((rows * nx, cols * ny), dtype=slice_xyv.dtype)
    for v in range(nv):
        r, c = divmod(v, cols)
        out[r * nx:(r + 1) * nx, c * ny:(c + 1) * ny] = slice_xyv[:, :, v]
    return out


def unmosaic(image: np.ndarray, nv: int) -> np.ndarray:
    """Inverse of `mosaic`.

    Parameters
    ----------
    image : ndarray, shape (rows × x, cols × y)
        A mosaic of `nv` images.
    nv : int
        The number of images in it.

    Returns
    -------
    ndarray, shape (x, y, nv)
    """
    cols = math.ceil(math.sqrt(nv))
    rows = math.ceil(nv / cols)
    nx, ny = image.shape[0] // rows, image.shape[1] // cols
    return np.stack([image[(v // cols) * nx:(v // cols + 1) * nx, (v % cols) * ny:(v % cols + 1) * ny]
                     for v in range(nv)], axis=-1)
