"""transform: q-space transform coding with a learned entropy model — the smallest lossy dMRI files at equal PSNR.

Per axial slice: a KLT across the volumes (principal components of the voxels of a slab of `slab` consecutive
slices, each slice centred by its own means; the means and the slab's basis quantised to the precision each
component needs and entropy-coded, the basis once a slab), the leading component maps optionally
through an orthonormal in-plane wavelet (`wavelet`, where it lowers the rate), every coefficient quantised
with one common step Δ (a deadzone quantiser: |c|/Δ rounds up from `rounding`, and decodes to the mean of
its interval, stored per magnitude class; then each magnitude re-chosen among 0, ⌊|c|/Δ⌋ and ⌊|c|/Δ⌋ + 1 for
the least squared error + λ × its estimated bits, a rate–distortion-optimised quantisation), and the quantised
maps coded by adaptive rANS with contexts chosen by a small network trained on the data at encode time
(`context_model`). Components whose coding costs more than it gains at the step's rate–distortion slope are
left out. One step for every slice and component gives every coefficient the same squared error, the
allocation that minimises the total error at a given rate for an orthonormal transform (reverse
water-filling; Cover and Thomas, *Elements of Information Theory*, §10.3). Decoding needs numpy alone; the
symbols decode bit-identically everywhere (integer arithmetic), the values to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from .. import context_model as cm
from .. import entropy, wavelet
from ..archive import codec_keys, is_int
from ..errors import ArchiveError, InputError
from . import EncodedSlice, JsonSettings, setting

NAME = "transform"
EXACT = False
MEMBERS = "slab"
RATE_CONTROL = frozenset({"ratio", "psnr"})
PRESETS: dict = {}
DEFAULT_PRESET = None

MEAN_STEPS = 8  # the volume means are stored in Δ/8
BASIS_PRECISION = 24.0  # a basis row of coefficient deviation s is stored in steps of about Δ / (24 s)
EXPONENTS = (5, 15)  # basis rows in 2^-e, e within these bounds (coarser rows lose their direction)
OFFSET_UNITS = 64  # reconstruction offsets in 1/64 of a step, one per magnitude class 1, 2, ≥ 3
CLASSES = 3
SIDE_CONTEXTS = 4  # side streams: means, exponents and flags, basis, reserved
SIDE_LANES = 256  # at most: fewer for a short side stream (see `_side_lanes`)
SYMBOLS_PER_LANE = 32  # side streams: at least this many symbols a lane (a lane's final state takes 4 bytes)
LEGACY_SYMBOLS_PER_LANE = 4  # the same in archives written before 0.8 (a basis in every slice's side stream)
HEADER = np.dtype("<u4")
INCREMENT = 8  # adaptation speed of the coefficient coder's counts (see entropy.encode_chunks)
UPDATE_EVERY = 512  # symbols between updates of the coefficient coder's counts
RD_SLOPE = 2 * math.log(2) / 12  # λ = this × Δ²: squared error per bit at a uniform quantiser's slope
RDO_SLOPE = 1.5 * RD_SLOPE  # λ of the symbol decisions (`_optimised`), measured: × 1 and × 2 within 0.03 dB
MIN_LANES, MAX_LANES = 16, 4096
LANE_SHARE = 0.01
CHUNK_STEPS = 64  # at least as many lanes as a pass of a map needs to decode in this many steps
MAX_MAGNITUDE = 1 << 52  # |symbol| below this (exact in float64): a smaller step for the data is refused
RATE_SLICES = 8  # slices the rate search encodes
RATE_ROUNDS = 4  # rounds of the search (model retrained), then of whole encodes that correct the step
RATE_TOLERANCE = 0.01
RATE_EXPONENT = 1.2  # bytes fall about as Δ^-1.2 near the targets (a correction's step)


@dataclass(frozen=True)
class Config(JsonSettings):
    """Settings of the transform codec."""

    step: float | None = setting(None, "--step", "quantiser step Δ in the data's units (default: the noise σ "
                                 "of the data); larger: smaller files", above=0)
    rounding: float = setting(0.38, "--rounding", "deadzone: |c|/Δ rounds up from this fraction (0.5: plain "
                              "rounding)", min=0.05, max=0.5)
    max_components: int = setting(0, "--max-components", "most KLT components kept per slice (0: as the "
                                  "rate–distortion slope decides)", min=0, max=4096)
    context_units: int = setting(12, "--context-units", "hidden units of the learned entropy model", min=1,
                                 max=64)
    seed: int = setting(0, "--seed", "seed of the entropy model's training", min=0)
    slab: int = setting(8, "--slab", "consecutive slices that share one KLT basis (1: a basis per slice)", min=1,
                        max=4096)


def default_config() -> Config:
    """The settings used when none are given: `Config()`.

    Returns
    -------
    Config
    """
    return Config()


def configure(base: Config, given: dict) -> Config:
    """`base` with `given` on top.

    Parameters
    ----------
    base : Config
    given : dict
        Config field name → value.

    Returns
    -------
    Config
    """
    return replace(base, **given)


def preferred(has_gradients: bool, volumes: int, diffusion_like: bool) -> bool:
    """For diffusion data: any input with gradients, or that looks like diffusion data.

    Parameters
    ----------
    has_gradients : bool
    volumes : int
    diffusion_like : bool

    Returns
    -------
    bool
    """
    return (has_gradients or diffusion_like) and volumes >= 2


# --- encoding -------------------------------------------------------------------------------------------


@dataclass
class Quantised:
    """One slice after the transform and the quantiser, before entropy coding."""

    means: np.ndarray  # (volumes,) int64, in Δ / MEAN_STEPS
    exponents: np.ndarray  # (K,) int64: basis row k in 2^-e_k
    basis: np.ndarray  # (K, volumes) int64
    in_plane: np.ndarray  # (K,) bool: map through the wavelet
    symbols: np.ndarray  # (K, x', y') int64, x', y' padded for the wavelet
    offsets: np.ndarray  # (CLASSES,) int64, in 1/OFFSET_UNITS of a step


def encode(volume, config: Config, progress=None) -> list[EncodedSlice]:
    """Code every axial slice.

    Parameters
    ----------
    volume : Volume4D
        The data, (x, y, z, volumes), integer or float.
    config : Config
    progress : callable or None
        Receives progress events (dicts).

    Returns
    -------
    list of EncodedSlice
        One per axial slice, each with its member.

    Raises
    ------
    InputError
        For data that are not finite.
    """
    data = volume.data
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InputError("the transform codec needs finite data (no NaN or infinity)")
    step = resolved_step(data, config)
    emit = progress or (lambda event: None)
    nz = data.shape[2]
    emit({"event": "start", "slices": nz, "networks": 0, "epochs": 0, "device": "cpu"})
    slabs = slab_ranges(data.shape, config.slab)
    slices = []
    for zs in slabs:
        transform = klt(data[:, :, zs.start:zs.stop])
        slices += [quantise(data[:, :, z].astype(np.float64), step, config, transform, len(zs)) for z in zs]
    network = train_model(slices, config)
    out = []
    for zs in slabs:
        member = write_slab([slices[z] for z in zs], network)
        for position, z in enumerate(zs):
            head = position == 0
            out.append(EncodedSlice(entry_of(slices[z], step, position), member if head else None,
                                    None if head else zs.start))
            emit({"event": "slice", "slice": z, "slices": nz, "kind": NAME, "bytes": len(member) if head else 0,
                  **({} if head else {"member_of": zs.start})})
    return out


def slab_ranges(shape: tuple, slab: int) -> list[range]:
    """The slabs of a volume: consecutive runs of `slab` axial slices (the last may be shorter); of one slice
    where a slice has fewer voxels than volumes (its own KLT codes it in fewer components than a shared one).

    Parameters
    ----------
    shape : tuple of int
        (x, y, z, volumes).
    slab : int
        ≥ 1.

    Returns
    -------
    list of range
    """
    nx, ny, nz, nv = shape
    size = slab if nx * ny >= nv else 1
    return [range(z, min(z + size, nz)) for z in range(0, nz, size)]


def resolved_step(data: np.ndarray, config: Config) -> float:
    """Δ: the configured step, or the noise σ of the data (1 for noise-free data).

    Parameters
    ----------
    data : ndarray, shape (x, y, z, volumes)
    config : Config

    Returns
    -------
    float
    """
    if config.step is not None:
        return float(config.step)
    from ..noise import estimate_sigma

    sigma = estimate_sigma(data) if data.shape[3] >= 2 else 0.0
    return sigma if sigma > 0 else 1.0


@dataclass(frozen=True)
class Klt:
    """The principal components of a slab's voxels: the eigenvectors as rows (volumes, volumes) and the
    coefficients' standard deviations (volumes,), largest first."""

    vectors: np.ndarray
    deviations: np.ndarray


def klt(slab: np.ndarray) -> Klt:
    """The KLT across the volumes of a slab of axial slices (x, y, slices, volumes), each slice centred by its
    own means.

    The classical Karhunen–Loève transform: the eigenvectors of the volumes' covariance over the slab's voxels
    (normalised by the voxel count), in order of decreasing eigenvalue.

    Parameters
    ----------
    slab : ndarray, shape (x, y, slices, volumes)

    Returns
    -------
    Klt
        Eigenvectors as rows and standard deviations (negative eigenvalues taken as 0), largest first.
    """
    x = slab.astype(np.float64)
    centred = (x - x.mean(axis=(0, 1), keepdims=True)).reshape(-1, slab.shape[3])
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred / centred.shape[0])
    order = np.argsort(eigenvalues)[::-1]
    return Klt(vectors[:, order].T, np.sqrt(np.maximum(eigenvalues[order], 0)))


def quantise(image: np.ndarray, step: float, config: Config, transform: Klt | None = None,
             sharers: int = 1) -> Quantised:
    """The KLT (`transform`, the slice's own if not given), the in-plane wavelet where it pays and the deadzone
    quantiser of one slice (x, y, volumes).

    Parameters
    ----------
    image : ndarray, shape (x, y, volumes), float64
    step : float
        Δ, in the data's units.
    config : Config
        Uses `rounding` and `max_components`.
    transform : Klt or None
        The KLT of the slice's slab.
    sharers : int
        The slices that share its basis (their slab's size): each is charged this share of a basis row's bits
        when deciding which components to keep.

    Returns
    -------
    Quantised
        With the components worth their rate at the step's rate–distortion slope (possibly none).

    Raises
    ------
    InputError
        When the step is so small that a mean or a coefficient in steps would reach 2^52.
    """
    transform = transform or klt(image[:, :, None])
    nx, ny, nv = image.shape
    volume_means = image.reshape(nx * ny, nv).mean(axis=0)
    if not np.abs(volume_means).max() / step * MEAN_STEPS < MAX_MAGNITUDE:
        raise InputError(f"the step {step:g} is too small for these data: choose a larger --step")
    means = np.rint(volume_means / step * MEAN_STEPS).astype(np.int64)
    centred = image.reshape(nx * ny, nv) - means * (step / MEAN_STEPS)
    limit = component_limit(nx, ny, nv, config.max_components)
    exponents = np.clip(np.ceil(np.log2(np.maximum(transform.deviations[:limit], 1e-300) * BASIS_PRECISION / step)),
                        *EXPONENTS).astype(np.int64)
    basis = np.rint(transform.vectors[:limit] * 2.0 ** exponents[:, None]).astype(np.int64)
    coefficients = _project(centred, _basis_values(basis, exponents))  # (voxels, K)
    maps = _padded(coefficients.T.reshape(limit, nx, ny))
    waves = wavelet.forward(maps)
    if not max(np.abs(maps).max(initial=0), np.abs(waves).max(initial=0)) / step < MAX_MAGNITUDE - 1:
        raise InputError(f"the step {step:g} is too small for these data: choose a larger --step")
    plain_q, wave_q = _deadzone(maps / step, config.rounding), _deadzone(waves / step, config.rounding)
    in_plane = _cost(wave_q) < _cost(plain_q)
    values = np.where(in_plane[:, None, None], waves, maps) / step
    symbols = np.where(in_plane[:, None, None], wave_q, plain_q)
    keep = _kept_components(values, symbols, basis, exponents, sharers)
    symbols, values = symbols[:keep], values[:keep]
    symbols = _optimised(values, symbols)
    return Quantised(means, exponents[:keep], basis[:keep], in_plane[:keep], symbols, _offsets(values, symbols))


def component_limit(nx: int, ny: int, nv: int, max_components: int = 0) -> int:
    """The most components a slice of nx × ny voxels and nv volumes codes: at most one per volume and one per
    voxel (the KLT of n voxels has rank below n), and at most `max_components` when that is not 0.

    Parameters
    ----------
    nx, ny, nv : int
    max_components : int

    Returns
    -------
    int
    """
    return min(nv, nx * ny, max_components or nv)


def _project(centred: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of the rows of `centred` on the (quantised, nearly orthonormal) basis rows;
    the smallest such where the rows are dependent (rows of components far below the step may round to 0)."""
    if not basis.size:
        return np.zeros((centred.shape[0], 0))
    return centred @ np.linalg.pinv(basis)  # least squares; rows may be coarse, even zero or dependent


def _basis_values(basis: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    return basis / 2.0 ** exponents[:, None]


def _padded(maps: np.ndarray) -> np.ndarray:
    """Maps (K, x, y) mirrored out to sizes the wavelet takes 3 levels of, where it can (see `padded_size`)."""
    px, py = padded_size(maps.shape[1]), padded_size(maps.shape[2])
    return np.pad(maps, [(0, 0), (0, px - maps.shape[1]), (0, py - maps.shape[2])], mode="symmetric")


def padded_size(n: int) -> int:
    """The axis length a map of `n` samples is coded at: a multiple of 8 for n ≥ 16, else n.

    Parameters
    ----------
    n : int

    Returns
    -------
    int
    """
    return -(-n // 8) * 8 if n >= 2 * wavelet.LOW_PASS.size else n


def _deadzone(scaled: np.ndarray, rounding: float) -> np.ndarray:
    return (np.sign(scaled) * np.floor(np.abs(scaled) + rounding)).astype(np.int64)


def _cost(symbols: np.ndarray) -> np.ndarray:
    """A rate proxy per map: the summed log-magnitudes (K,)."""
    return np.log2(1.0 + np.abs(symbols)).sum(axis=(1, 2))


def _kept_components(values: np.ndarray, symbols: np.ndarray, basis: np.ndarray, exponents: np.ndarray,
                     sharers: int) -> int:
    """The number of leading components worth coding: the last whose squared error saved exceeds λ × its bits
    (order-0 entropy of its symbols, a sign per non-zero, its share of its basis row), all in units of Δ²."""
    if not symbols.shape[0]:
        return 0
    saved = (values ** 2).sum(axis=(1, 2)) - ((values - symbols) ** 2).sum(axis=(1, 2))
    bits = np.array([_entropy_bits(s) for s in symbols]) + (symbols != 0).sum(axis=(1, 2))
    bits = bits + basis.shape[1] * (exponents + 1) / sharers
    worth = np.flatnonzero(saved > RD_SLOPE * bits)
    return int(worth[-1]) + 1 if worth.size else 0


def _entropy_bits(symbols: np.ndarray) -> float:
    counts = np.unique(np.abs(symbols), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def _optimised(values: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Rate–distortion-optimised symbols: each coefficient's magnitude among 0, ⌊|c|/Δ⌋ and ⌊|c|/Δ⌋ + 1, the one
    of least squared error + `RDO_SLOPE` × bits (in units of Δ²), where the deadzone symbol is at most 14 (the
    choices are tokens of their own, no verbatim bits); larger symbols stay as they are.

    The error counts the reconstruction offsets of the deadzone symbols (`_offsets`); the bits are a token's
    code length in its context (`_estimated_contexts`) under the deadzone symbols' counts per context, plus a
    sign. Each symbol is decided alone, its neighbours' contexts as they were.

    Parameters
    ----------
    values : ndarray, shape (K, x', y')
        The coefficients in steps.
    symbols : ndarray, shape (K, x', y'), int64
        Their deadzone symbols.

    Returns
    -------
    ndarray, shape (K, x', y'), int64
    """
    if not symbols.size:
        return symbols
    top = entropy.TOKEN_DIRECT - 2  # magnitudes up to this and one more are their own tokens
    contexts = _estimated_contexts(symbols) * (top + 2)  # the table rows
    known = np.minimum(np.abs(symbols), top + 1)  # tokens, those above `top` lumped together
    counts = np.bincount((contexts + known).ravel(), minlength=cm.CONTEXTS * (top + 2)).reshape(cm.CONTEXTS, -1)
    code_length = -np.log2((counts + 0.5) / (counts + 0.5).sum(axis=1, keepdims=True))
    cost_of = RDO_SLOPE * (code_length + (np.arange(top + 2) > 0)).ravel()  # and a sign
    magnitudes = np.arange(top + 2)
    levels = np.where(magnitudes > 0, magnitudes + _offsets(values, symbols)[np.minimum(magnitudes, CLASSES) - 1]
                      / OFFSET_UNITS, 0.0)  # what each magnitude decodes to
    magnitude = np.abs(values)
    floor = np.minimum(magnitude, top).astype(np.int64)
    best, cost = np.zeros_like(floor), magnitude ** 2 + cost_of[contexts]
    for choice in (floor, floor + 1):
        trial = (magnitude - levels[choice]) ** 2 + cost_of[contexts + choice]
        better = trial < cost
        best[better], cost[better] = choice[better], trial[better]
    return np.where(known > top, symbols, np.where(values < 0, -best, best))


def _estimated_contexts(symbols: np.ndarray) -> np.ndarray:
    """A stand-in for the entropy model's contexts of symbols (K, x', y'): the same features (`_features`) and
    bins, from a least-squares predictor of the log-magnitude, linear in the features with one intercept per
    bucket, fitted to these symbols (the model itself is trained once every slice is quantised)."""
    features, buckets = _features(symbols)
    features, buckets = features.reshape(cm.FEATURES, -1), buckets.ravel()
    targets = cm.log_magnitude(symbols).ravel().astype(np.float64)
    sums = np.stack([np.bincount(buckets, row, cm.BUCKETS) for row in features])  # (FEATURES, BUCKETS)
    gram = np.block([[features @ features.T, sums], [sums.T, np.diag(np.bincount(buckets, minlength=cm.BUCKETS))]])
    weights = np.linalg.lstsq(gram, np.concatenate([features @ targets, np.bincount(buckets, targets, cm.BUCKETS)]),
                              rcond=None)[0]  # the normal equations: features, then one indicator per bucket
    predicted = weights[:cm.FEATURES] @ features + weights[cm.FEATURES:][buckets]
    contexts = np.floor(predicted).astype(np.int64) * cm.BINS_PER_BIT // cm.LOG_SCALE
    return np.clip(contexts, 0, cm.CONTEXTS - 1).reshape(symbols.shape)


def _features(symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features (FEATURES, K, x', y') and buckets (K, x', y') that `_passes` gives each symbol, all at once."""
    log_maps = cm.log_magnitude(symbols).astype(np.int32)  # sums below 2^31, and faster
    previous = np.concatenate([np.zeros_like(log_maps[:1]), log_maps[:-1]])
    totals = np.cumsum(previous, axis=0)
    history = totals - np.concatenate([np.zeros_like(totals[:cm.HISTORY]), totals[:-cm.HISTORY]])[:len(totals)]
    first = cm.anchors(*symbols.shape[1:])
    in_plane = np.where(first, 0, cm.cross4(np.where(first, log_maps, 0)))
    features = np.stack([cm.box3(previous), cm.box3(history), previous, in_plane]).astype(np.float64)
    index = np.minimum(np.arange(symbols.shape[0]), cm.MAP_BUCKETS - 1)
    return features, 2 * index[:, None, None] + ~first


def _offsets(values: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Per magnitude class (1, 2, ≥ 3): the mean of |c|/Δ − |q| over the coefficients of that class."""
    magnitude = np.abs(symbols)
    out = np.zeros(CLASSES, dtype=np.int64)
    for m in range(1, CLASSES + 1):
        chosen = magnitude == m if m < CLASSES else magnitude >= m
        if chosen.any():
            gap = np.abs(values[chosen]) - magnitude[chosen]
            out[m - 1] = int(np.clip(np.rint(gap.mean() * OFFSET_UNITS), -OFFSET_UNITS // 2, OFFSET_UNITS // 2))
    return out


def training_stride(slices: int) -> int:
    """The entropy model trains on every this-many-th slice (8 to 15 slices of a large volume).

    Parameters
    ----------
    slices : int

    Returns
    -------
    int
    """
    return max(1, slices // RATE_SLICES)


def train_model(slices: list[Quantised], config: Config) -> cm.Network:
    """The entropy model, trained on the symbols of about 8 slices spread over the volume.

    Every ⌊n/8⌋-th of the n slices (all of them when n < 16; 8 to 12 otherwise), with the features each symbol
    has as the decoder meets it (`context_model.Features`).

    Parameters
    ----------
    slices : list of Quantised
        Every slice of the volume, in order.
    config : Config
        Uses `context_units` and `seed`.

    Returns
    -------
    context_model.Network
        Untrained (no optimiser steps) when the chosen slices have no symbols.
    """
    features, buckets, targets = [], [], []
    for q in slices[::training_stride(len(slices))]:
        for k, where, stack, bucket in _passes(q.symbols):
            features.append(stack.T)
            buckets.append(np.full(int(where.sum()), bucket))
            targets.append(cm.log_magnitude(q.symbols[k][where]))
    if not features:  # nothing to code: an untrained network
        return cm.train(np.zeros((1, cm.FEATURES), dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1),
                        config.context_units, steps=0, seed=config.seed)
    return cm.train(np.concatenate(features), np.concatenate(buckets), np.concatenate(targets),
                    config.context_units, seed=config.seed)


def _passes(symbols: np.ndarray):
    """Per map k and pass, as the decoder meets them: (k, where (x, y) bool, the features of those places
    (FEATURES, m) in row-major order, bucket)."""
    _, nx, ny = symbols.shape
    first = cm.anchors(nx, ny)
    features = cm.Features((nx, ny))
    for k in range(symbols.shape[0]):
        log_map = cm.log_magnitude(symbols[k])
        for where, own in ((first, None), (~first, np.where(first, log_map, 0))):
            stack, bucket = features.of(own is None, own)
            yield k, where, stack, bucket
        features.add(log_map)


def write_slab(slices: list[Quantised], network: cm.Network) -> bytes:
    """The member of a slab: the entropy model, the slab's basis, then each slice's block (`write_slice`), each
    after its uint32 length.

    The basis is that of the slice with the most components (the others' are its leading rows): uint32 K, then
    the side stream of the K basis exponents and the K × volumes basis rows.

    Parameters
    ----------
    slices : list of Quantised
        The slab's slices, in order, quantised with one basis.
    network : context_model.Network
        The entropy model.

    Returns
    -------
    bytes
    """
    return _slab_head(slices, network) + b"".join(_sized(write_slice(q, network)) for q in slices)


def _slab_head(slices: list[Quantised], network: cm.Network) -> bytes:
    """The part of a slab's member before its slices' blocks: the network, K and the basis stream."""
    widest = max(slices, key=lambda q: q.symbols.shape[0])
    basis = _side_stream([(widest.exponents, 1), (widest.basis.ravel(), 2)])
    return network.to_bytes() + np.array([len(widest.exponents)], dtype=HEADER).tobytes() + _sized(basis)


def write_slice(q: Quantised, network: cm.Network) -> bytes:
    """A slice's block: its side information and coefficient tokens (each after its uint32 length), then the
    verbatim bits (extra bits and signs, pass by pass).

    The side stream holds the volume means, the wavelet flags and the reconstruction offsets. The coefficient
    stream starts with one byte, the token alphabet's size; its rANS lanes are chosen from the size of a trial
    encode.

    Parameters
    ----------
    q : Quantised
    network : context_model.Network
        The entropy model that picks the coefficient tokens' contexts.

    Returns
    -------
    bytes
    """
    side = _side_stream([(q.means, 0), (np.concatenate([q.in_plane.astype(np.int64), q.offsets]), 1)])
    tokens, contexts, chunks, bits, nbits = [], [], [], [], []
    for k, where, stack, bucket in _passes(q.symbols):
        chosen = q.symbols[k][where]
        token, count, extra = entropy.split_integers(np.abs(chosen))
        tokens.append(token)
        contexts.append(cm.contexts(network, stack, bucket))
        chunks.append(chosen.size)
        signs = chosen[chosen != 0] < 0
        bits += [extra, signs.astype(np.uint64)]
        nbits += [count, np.ones(signs.size, dtype=np.int64)]
    tokens = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)
    alphabet = int(tokens.max(initial=0)) + 1
    contexts = np.concatenate(contexts) if contexts else tokens
    coded = entropy.encode_chunks(tokens, alphabet, contexts, cm.CONTEXTS, chunks,
                                  _lanes(_entropy_bytes(tokens, contexts, alphabet), max(chunks, default=0)),
                                  INCREMENT, UPDATE_EVERY)
    verbatim = entropy.pack_bits(np.concatenate(bits or [np.zeros(0)]), np.concatenate(nbits or [np.zeros(0)]))
    return _sized(side) + _sized(bytes([alphabet]) + coded) + verbatim


def _entropy_bytes(tokens: np.ndarray, contexts: np.ndarray, alphabet: int) -> int:
    """The conditional order-0 entropy of the tokens given their contexts, in bytes (about the coded size)."""
    counts = np.bincount(contexts * alphabet + tokens, minlength=cm.CONTEXTS * alphabet).reshape(-1, alphabet)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = -np.where(counts > 0, counts * np.log2(counts / np.maximum(totals, 1)), 0.0).sum()
    return int(bits / 8)


def _lanes(nbytes: int, chunk: int) -> int:
    """Lanes of the coefficient coder for a stream of about `nbytes` in chunks (passes) of `chunk` symbols:
    the most (a power of 2, MIN_LANES to MAX_LANES) whose final states (4 bytes a lane) take at most
    LANE_SHARE of it, and at least enough for a pass in CHUNK_STEPS steps. More lanes decode faster, and the
    slices of a volume decode in lock step, as slowly as their fewest lanes (small slices of little signal)."""
    lanes = MIN_LANES
    while lanes < MAX_LANES and (8 * lanes <= LANE_SHARE * nbytes or lanes * CHUNK_STEPS < chunk):
        lanes *= 2
    return lanes


def _sized(part: bytes) -> bytes:
    return np.array([len(part)], dtype=HEADER).tobytes() + part


def _side_stream(parts: list[tuple[np.ndarray, int]]) -> bytes:
    """Integers (values, kind) in order: zigzag integers, rANS-coded (a context per kind) with their verbatim
    bits."""
    values = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in parts])
    kinds = np.concatenate([np.full(np.size(p), kind) for p, kind in parts])
    tokens, nbits, extra = entropy.split_integers(_zigzag(values))
    coded = entropy.encode_chunks(tokens, entropy.TOKENS, kinds, SIDE_CONTEXTS, [tokens.size],
                                  _side_lanes(tokens.size, SYMBOLS_PER_LANE))
    return _sized(coded) + entropy.pack_bits(extra, nbits)


def _side_lanes(count: int, per_lane: int) -> int:
    """Lanes of a side stream of `count` symbols: SIDE_LANES, halved while there are fewer than `per_lane`
    symbols a lane (a lane's final state takes 4 bytes: a short stream would be mostly states)."""
    lanes = SIDE_LANES
    while lanes > 1 and per_lane * lanes > count:
        lanes //= 2
    return lanes


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ -((u & np.uint64(1)).astype(np.int64))


def entry_of(q: Quantised, step: float, position: int) -> dict:
    """The manifest entry of a coded slice: the codec's name, its step, the number of kept components and its
    place in its slab.

    Parameters
    ----------
    q : Quantised
    step : float
        Δ.
    position : int
        0 for the slab's first slice (which stores the slab's member), 1 for the next, …

    Returns
    -------
    dict
        {"kind": "transform", "step": step, "components": K, "slab_position": position}.
    """
    return {"kind": NAME, "step": step, "components": int(q.symbols.shape[0]), "slab_position": position}


def placeholders(volume, config: Config) -> list[EncodedSlice]:
    """The entries `encode` makes, with empty members (for the container's size).

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    list of EncodedSlice
    """
    nv = volume.shape[3]
    return [EncodedSlice({"kind": NAME, "step": 1.2345678901234567, "components": nv, "slab_position": z - zs.start},
                         b"" if z == zs.start else None, None if z == zs.start else zs.start)
            for zs in slab_ranges(volume.shape, config.slab) for z in zs]


# --- rate control ---------------------------------------------------------------------------------------


def settings_for_bytes(volume, config: Config, budget: int) -> Config:
    """The settings whose members total about `budget` bytes: the step Δ, found by bisection.

    A bisection encodes the slices the entropy model trains on (all of a volume of up to 15 slices, every
    `training_stride`-th of a larger one) with the model trained at the current step, and scales their bytes
    to the volume, to within 3 % of the budget; the model is retrained at the step found and the step refined
    on its estimates (`_refined_step`), at most `RATE_ROUNDS` times, until the bytes are within 1 % of the
    budget. The model trained at a step is the one `encode` trains there, so for small volumes the size is
    exact; for larger ones whole encodes correct the step (at most `RATE_ROUNDS`).

    Parameters
    ----------
    volume : Volume4D
    config : Config
    budget : int
        Bytes for all slices' members.

    Returns
    -------
    Config
        With `step` set.

    Raises
    ------
    InputError
        When even the coarsest step does not fit the budget.
    """
    data = volume.data
    nz = data.shape[2]
    picked = list(range(0, nz, training_stride(nz)))  # the slices the model trains on
    slabs = [zs for zs in slab_ranges(data.shape, config.slab) if any(z in zs for z in picked)]
    transforms = {zs: klt(data[:, :, zs.start:zs.stop]) for zs in slabs}

    def quantised(step: float) -> list[Quantised]:
        return [quantise(data[:, :, z].astype(np.float64), step, config, transforms[zs], len(zs))
                for zs in slabs for z in zs if z in picked]

    def estimate(network: cm.Network, step: float) -> float:
        """The picked slices' blocks and their shares of their slabs' heads, scaled to the volume."""
        qs, total = iter(quantised(step)), 0.0
        for zs in slabs:
            chosen = [next(qs) for z in zs if z in picked]
            total += sum(4 + len(write_slice(q, network)) for q in chosen)
            total += len(_slab_head(chosen, network)) * len(chosen) / len(zs)
        return total * nz / len(picked)

    # the model trained at the step measured is the one `encode` trains there: the estimate is exact when
    # every slice is picked, and scaled from the picked ones otherwise
    step, tried = resolved_step(data, config), []
    for _ in range(RATE_ROUNDS):
        network = train_model(quantised(step), config)
        tried.append((step, estimate(network, step)))
        if abs(tried[-1][1] - budget) <= RATE_TOLERANCE * budget:
            break
        size_of = partial(estimate, network)
        if len(tried) == 1:  # the model of the first step misjudges the sizes near the budget by a few %
            step = _bisect_step(size_of, budget, step, 3 * RATE_TOLERANCE)
        else:
            step = _refined_step(size_of, budget, tried[-1])
    step = min(tried, key=lambda t: abs(math.log(t[1] / budget)))[0]
    tried = []  # (step, bytes) of whole encodes, when the estimate was scaled from some slices
    for _ in range(RATE_ROUNDS if len(picked) < nz else 0):
        encoded = encode(volume, replace(config, step=step))
        tried.append((step, sum(len(item.member or b"") for item in encoded)))  # a slab's later slices: None
        if abs(tried[-1][1] - budget) <= RATE_TOLERANCE * budget:
            break
        step = _corrected_step(tried, budget)
    best = min(tried, key=lambda t: abs(math.log(t[1] / budget))) if tried else (step,)
    return replace(config, step=float(best[0]))


def _corrected_step(tried: list[tuple[float, int]], budget: float) -> float:
    """The next step to encode at, from the (step, bytes) measured so far: interpolated in log–log between the
    closest steps on either side of the budget, or extrapolated along the local slope of the two closest
    (`RATE_EXPONENT` when there is one point, or no usable slope). Sizes near the noise floor fall much
    faster than the exponent says, where components drop out; far above it, much slower."""
    over = [t for t in tried if t[1] > budget]  # step too small
    under = [t for t in tried if t[1] <= budget]
    if over and under:
        pair = [max(over), min(under)]
    else:
        pair = sorted(tried, key=lambda t: abs(math.log(t[1] / budget)))[:2]
    (s1, b1), (s2, b2) = pair[0], pair[-1]
    slope = math.log(b2 / b1) / math.log(s2 / s1) if s1 != s2 and b1 != b2 else 0.0
    if not slope < 0:
        slope = -RATE_EXPONENT
    step = s1 * (budget / b1) ** (1 / slope)
    if over and under:  # stay inside the bracket
        step = min(max(step, pair[0][0]), pair[1][0])
    return step


def _refined_step(size_of, budget: float, known: tuple[float, float]) -> float:
    """A step whose `size_of` is within a third of RATE_TOLERANCE of `budget`, from a (step, size) near it: at
    most RATE_ROUNDS corrections by `_corrected_step` (later rounds of the search only refine, where a
    bisection spends twice the encodes), else the closest step found."""
    tried = [known]
    for _ in range(RATE_ROUNDS):
        step = _corrected_step(tried, budget)
        tried.append((step, size_of(step)))
        if abs(tried[-1][1] - budget) <= RATE_TOLERANCE / 3 * budget:
            break
    return min(tried, key=lambda t: abs(math.log(t[1] / budget)))[0]


def settings_for_psnr(volume, config: Config, psnr: float) -> Config:
    """The largest step Δ whose decoded volume reaches `psnr` (dB, the project's definition), by bisection on
    the quantiser alone (no entropy coding needed: the error does not depend on it).

    Parameters
    ----------
    volume : Volume4D
    config : Config
    psnr : float

    Returns
    -------
    Config
        With `step` set.
    """
    from ..metrics import value_range
    from ..pipeline import decoded_psnr

    data = volume.data
    lo, hi = value_range(data)
    span = float(hi - lo) or 1.0
    slabs = [(zs, klt(data[:, :, zs.start:zs.stop])) for zs in slab_ranges(data.shape, config.slab)]

    def reached(step: float) -> float:  # of the voxels as decoded: clamped, and rounded for integer data
        return decoded_psnr(data, (reconstruct(quantise(data[:, :, z].astype(np.float64), step, config, t, len(zs)),
                                               step, data.shape) for zs, t in slabs for z in zs))

    lo_step, hi_step = 1e-6 * span, span
    for _ in range(40):
        middle = math.sqrt(lo_step * hi_step)
        lo_step, hi_step = (middle, hi_step) if reached(middle) >= psnr else (lo_step, middle)
    return replace(config, step=float(lo_step))


def _bisect_step(size_of, budget: float, start: float, tolerance: float) -> float:
    """A step whose `size_of` is within `tolerance` (a fraction) of `budget`, or the closest from below found by
    bisecting log Δ over [start / 64, start × 64] (sizes fall as the step grows)."""
    lo, hi = start / 64, start * 64
    for _ in range(24):
        middle = math.sqrt(lo * hi)
        size = size_of(middle)
        if abs(size - budget) <= tolerance * budget:
            return middle
        lo, hi = (middle, hi) if size > budget else (lo, middle)
        if hi / lo < 1.002:
            break
    if size_of(hi) > budget * (1 + RATE_TOLERANCE):
        raise InputError("the target ratio is out of reach for the transform codec: choose a lower ratio")
    return hi


# --- decoding -------------------------------------------------------------------------------------------


def check_slices(config: Config, manifest: dict) -> int:
    """Check every entry: a transform entry (a positive finite step, 0 to volumes components) with a member, and
    its place in its slab (the slices that name one member: 0, 1, …); or, in every entry of an archive written
    before 0.8, no place (a member, and a basis, per slice).

    Parameters
    ----------
    config : Config
    manifest : dict

    Returns
    -------
    int
        The decoding work: about the multiply-adds of the entropy model and the inverse transforms.

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
    nx, ny, _, nv = manifest["shape"]
    px, py = padded_size(nx), padded_size(ny)
    most = component_limit(nx, ny, nv)
    slabs = "slab_position" in manifest["slices"][0] if manifest["slices"] else False
    keys = {"step", "components"} | ({"slab_position"} if slabs else set())
    work, previous = 0, None
    for entry in manifest["slices"]:
        z, step, k = entry["index"], entry.get("step"), entry.get("components")
        if not (entry["kind"] == NAME and codec_keys(entry) == keys and entry["member"]
                and isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step)
                and step > 0 and is_int(k) and 0 <= k <= most):
            raise ArchiveError(f"slice {z}: a transform entry needs a positive step, 0 to {most} components and a "
                               f"member{', and its place in its slab' if slabs else ''} (as every entry, or none)")
        if slabs:
            same = previous is not None and entry["member"] == previous["member"]
            if entry["slab_position"] != (previous["slab_position"] + 1 if same else 0):
                wanted = "one more than the slice before's" if same else "0"
                raise ArchiveError(f"slice {z}: its slab_position must be {wanted} (the slices of a slab name one "
                                   "member)")
        previous = entry
        work += k * px * py * (cm.FEATURES * 64 + px + py) + nx * ny * k * nv
    return work


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple) -> np.ndarray:
    """Decode one slice, with numpy only (`decode_slices` of one).

    Parameters
    ----------
    config : Config
    entry : dict
        The slice's manifest entry ("step", "components").
    member : bytes
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    ndarray, shape (x, y, volumes), float64

    Raises
    ------
    ArchiveError
        For a corrupt member.
    """
    return decode_slices(config, [entry], [member], shape)[0]


def decode_slices(config: Config, entries: list[dict], members: list[bytes | None], shape: tuple) -> list[np.ndarray]:
    """Decode several slices at once, with numpy only: their coefficient streams in lock step
    (`entropy.ChunkDecoders`), so that the numpy steps of the coder are shared by all of them.

    Parameters
    ----------
    config : Config
    entries : list of dict
        The slices' manifest entries ("step", "components").
    members : list of bytes
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    list of ndarray, shape (x, y, volumes), float64

    Raises
    ------
    ArchiveError
        For a corrupt member.
    """
    nx, ny, _, nv = shape
    slabs: dict = {}  # member name → its network, basis exponents, basis and blocks
    networks, sides, coded, verbatim = [], [], [], []
    for entry, member in zip(entries, members):
        k = int(entry["components"])
        if "slab_position" in entry:
            if entry["member"] not in slabs:
                slabs[entry["member"]] = _read_slab(member, nv)
            network, exponents, basis, blocks = slabs[entry["member"]]
            if k > len(exponents):
                raise ArchiveError(f"slice {entry['index']}: {k} components, more than its slab's basis has")
            if entry["slab_position"] >= len(blocks):
                raise ArchiveError(f"slice {entry['index']}: its slab's member has {len(blocks)} slices")
            side, stream, bits = _parts(blocks[entry["slab_position"]], 3)
            means, header = _read_side(side, [(nv, 0), (k + CLASSES, 1)], SYMBOLS_PER_LANE)
            in_plane, offsets = header[:k], header[k:]
            exponents, basis = exponents[:k], basis[:k]
        else:  # before 0.8: a member per slice, the basis in its side stream
            network, at = cm.Network.from_bytes(member)
            side, stream, bits = _parts(member[at:], 3)
            means, header, basis = _read_side(side, [(nv, 0), (2 * k + CLASSES, 1), (k * nv, 2)],
                                              LEGACY_SYMBOLS_PER_LANE)
            exponents, in_plane, offsets = np.split(header, [k, 2 * k])
            basis = basis.reshape(k, nv)
        _check_side(means, exponents, in_plane, offsets, basis)
        networks.append(network)
        sides.append((means, exponents, in_plane.astype(bool), offsets, basis))
        coded.append(stream)
        verbatim.append(bits)
    k_counts = [int(entry["components"]) for entry in entries]
    symbols = _read_symbols(coded, verbatim, networks, k_counts, (padded_size(nx), padded_size(ny)))
    decoded = []
    for (means, exponents, in_plane, offsets, basis), maps, k, entry in zip(sides, symbols, k_counts, entries):
        q = Quantised(means, exponents, basis, in_plane, maps[:k], offsets)
        decoded.append(reconstruct(q, float(entry["step"]), shape))
    return decoded


def _read_slab(member: bytes, nv: int) -> tuple:
    """A slab's member: its network, basis exponents (K,), basis (K, nv) and its slices' blocks."""
    network, at = cm.Network.from_bytes(member)
    if len(member) < at + 4:
        raise ArchiveError("transform member is truncated")
    k = int(np.frombuffer(member, dtype=HEADER, count=1, offset=at)[0])
    if k > nv:
        raise ArchiveError(f"transform member: a basis of {k} rows for {nv} volumes")
    stream, rest = _parts(member[at + 4:], 2)
    exponents, basis = _read_side(stream, [(k, 1), (k * nv, 2)], SYMBOLS_PER_LANE)
    blocks = []
    while rest:
        block, rest = _parts(rest, 2)
        blocks.append(block)
    return network, exponents, basis.reshape(k, nv), blocks


def reconstruct(q: Quantised, step: float, shape: tuple) -> np.ndarray:
    """The slice (x, y, volumes) that quantised coefficients stand for.

    Parameters
    ----------
    q : Quantised
    step : float
        Δ.
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    ndarray, shape (x, y, volumes), float64
    """
    nx, ny, _, nv = shape
    lo, hi = int(q.symbols.min(initial=0)), int(q.symbols.max(initial=0))
    if hi - lo < 1 << 20:  # the symbols' values, from a table of every level between the extremes
        values = _dequantised(np.arange(lo, hi + 1), q.offsets, step)[q.symbols - lo]
    else:
        values = _dequantised(q.symbols, q.offsets, step)
    values[q.in_plane] = wavelet.inverse(values[q.in_plane])
    maps = values[:, :nx, :ny]
    k_count = q.symbols.shape[0]
    x = maps.reshape(k_count, nx * ny).T @ _basis_values(q.basis, q.exponents) + q.means * (step / MEAN_STEPS)
    return x.reshape(nx, ny, nv)


def _dequantised(symbols: np.ndarray, offsets: np.ndarray, step: float) -> np.ndarray:
    """The coefficients (float64) that symbols stand for: (q + sign(q)·offset of |q|'s class)·Δ."""
    values = symbols.astype(np.float64)
    nonzero = np.flatnonzero(symbols)
    chosen = symbols.ravel()[nonzero]
    values.ravel()[nonzero] += np.sign(chosen) * (offsets[np.minimum(np.abs(chosen), CLASSES) - 1] / OFFSET_UNITS)
    values *= step
    return values


def _parts(data: bytes, count: int) -> list[bytes]:
    """`count` length-prefixed parts; the last takes the rest."""
    parts, at = [], 0
    for _ in range(count - 1):
        if len(data) < at + 4:
            raise ArchiveError("transform member is truncated")
        size = int(np.frombuffer(data, dtype=HEADER, count=1, offset=at)[0])
        if len(data) < at + 4 + size:
            raise ArchiveError("transform member is truncated")
        parts.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return parts + [data[at:]]


def _read_side(side: bytes, parts: list[tuple[int, int]], per_lane: int) -> list[np.ndarray]:
    """The integers of a side stream (`_side_stream`): one array per (count, kind) of `parts`."""
    coded, verbatim = _parts(side, 2)
    kinds = np.concatenate([np.full(n, kind) for n, kind in parts])
    decoder = entropy.ChunkDecoder(coded, entropy.TOKENS, SIDE_CONTEXTS, kinds.size, _side_lanes(kinds.size, per_lane))
    tokens = decoder.next(kinds)
    decoder.close()
    reader = entropy.BitReader(verbatim)
    values = _unzigzag(entropy.join_integers(tokens, reader.read(entropy.token_bits(tokens))))
    reader.close()
    return np.split(values, np.cumsum([n for n, _ in parts[:-1]]))


def _check_side(means: np.ndarray, exponents: np.ndarray, flags: np.ndarray, offsets: np.ndarray,
                basis: np.ndarray) -> None:
    """Refuse side information out of range."""
    if not (np.all((exponents >= EXPONENTS[0]) & (exponents <= EXPONENTS[1])) and np.all((flags == 0) | (flags == 1))
            and np.all(np.abs(offsets) <= OFFSET_UNITS // 2) and np.abs(basis).max(initial=0) <= 2 << EXPONENTS[1]
            and np.abs(means).max(initial=0) < 1 << 53):
        raise ArchiveError("transform side information is out of range: the archive is damaged")


def _read_symbols(coded: list[bytes], verbatim: list[bytes], networks: list[cm.Network], k_counts: list[int],
                  size: tuple) -> np.ndarray:
    """The quantised maps (slices, K, x', y') of several slices (K their most components), decoded pass by
    pass as `_passes` orders them, the slices side by side."""
    px, py = size
    symbols = np.zeros((len(coded), max(k_counts, default=0), px, py), dtype=np.int64)
    if not all(coded):
        raise ArchiveError("transform member is truncated")
    lanes = [int(np.frombuffer(stream[1:5].ljust(4, b"\0"), dtype=HEADER)[0]) for stream in coded]
    if not all(MIN_LANES <= n <= MAX_LANES for n in lanes):
        raise ArchiveError("transform member: bad lane count")
    decoder = entropy.ChunkDecoders([stream[1:] for stream in coded], [max(stream[0], 1) for stream in coded],
                                    cm.CONTEXTS, [k * px * py for k in k_counts], lanes, INCREMENT, UPDATE_EVERY)
    reader = entropy.BitReader(verbatim)
    first = cm.anchors(px, py)
    features = cm.Features(symbols.shape[:1] + (px, py))
    network = None
    for k in range(symbols.shape[1]):
        live = np.flatnonzero(np.array(k_counts) > k)
        if network is None or network.w2.shape[0] != live.size:  # slices only leave, as their maps run out
            network = cm.stack([networks[s] for s in live])
        maps = symbols[live, k]
        for where in (first, ~first):  # the second pass sees the first's symbols (zero elsewhere)
            stack, bucket = features.of(where is first, None if where is first else cm.log_magnitude(symbols[:, k]))
            contexts = cm.contexts(network, stack if live.size == len(coded) else stack[live], bucket)
            asked: list = [None] * len(coded)
            for i, s in enumerate(live):
                asked[s] = contexts[i]
            tokens = [t for t in decoder.next(asked) if t is not None]
            owner = np.repeat(live, [t.size for t in tokens])
            tokens = np.concatenate(tokens)
            magnitude = entropy.join_integers(tokens, reader.read(entropy.token_bits(tokens), owner))
            if magnitude.size and magnitude.max() >= MAX_MAGNITUDE:
                raise ArchiveError("transform member: a coefficient is out of range: the archive is damaged")
            signed = magnitude.astype(np.int64)
            nonzero = np.flatnonzero(signed)
            negative = reader.read(np.ones(nonzero.size, dtype=np.int64), owner[nonzero]).astype(bool)
            signed[nonzero[negative]] *= -1
            maps[:, where] = signed.reshape(live.size, -1)
            symbols[live, k] = maps
        features.add(cm.log_magnitude(symbols[:, k]))
    decoder.close()
    reader.close()
    return symbols

