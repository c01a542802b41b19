"""Codec "lossless": bit-exact coding of integer 4D data (dMRI first), after the lossless dMRI paper.

Per axial slice, the volumes are coded one after another in a coding order (non-weighted volumes first,
then each shell furthest-first, see `qspace.coding_order`). Each volume is predicted from what the decoder
already has, and the residual — value minus prediction, in modular arithmetic of the data's bit width —
is entropy-coded. Predictors, chosen per volume by the encoder as the one that codes smallest:

- spatial: LOCO-I's median edge detector from the left, upper and upper-left neighbours (the first
  volume of a slice);
- regression: a fixed-point linear combination of up to `references` earlier volumes (those most
  correlated with this one), the four neighbours of the best of them, and a constant; the weights are
  least-squares fits stored with the slice;
- q-space: the paper's PDE inpainting on the sphere of gradient directions of the volume's shell
  (Laplace–Beltrami or biharmonic), its weights over the earlier volumes of the shell stored the same way.

With `interlace` 2 (the default), the volume is coded in two halves of a checkerboard; the second half
adds a stored multiple of the mean residual of its four neighbours (known from the first half) to its
prediction (3: a quarter, a quarter with diagonal neighbours, a half with direct neighbours).
Residuals are binarised (`entropy.split_integers`) and their tokens coded by adaptive rANS with a context
from the residual magnitudes so far at and around the voxel (earlier volumes; for the second half also the
neighbours). All prediction arithmetic is integer, so every machine decodes the same bits; the SHA-256 of
each slice's voxels is stored and checked on decoding. Member layout: docs/FORMAT.md.

Near-lossless (`max_error` E > 0, or `max_error_noise` k: E = ⌊k·σ⌋ with σ the noise estimate): the residual
d = value − prediction is quantised as in JPEG-LS's near-lossless mode (ITU-T T.87 | ISO/IEC 14495-1, A.4.4;
Weinberger, Seroussi and Sapiro, "The LOCO-I lossless image compression algorithm", IEEE TIP 9(8), 2000):
q = sign(d)·⌊(|d| + E) / (2E + 1)⌋, and the voxel is reconstructed as prediction + q·(2E + 1) clamped to the
dtype's range, within ±E of the original. Every prediction — from earlier volumes, from the MED neighbours,
and the later passes' neighbour residuals (q·(2E + 1)) — is made from reconstructed values, so encoder and
decoder agree; q is coded where the lossless codec codes the residual. For integer data of at most 32 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .. import entropy
from ..archive import MAX_ERROR_LIMIT, SHA256, codec_keys, is_int
from ..errors import ArchiveError, InputError
from . import EncodedSlice, JsonSettings, setting, sha256_hex

FRACTION_BITS = 12  # weights are integers in units of 2^-12
WEIGHT_LIMIT = 1 << 40  # stored weights and factors lie in (−2^40, 2^40)
SPATIAL, REGRESSION, QSPACE = 0, 1, 2
LEVELS = 24  # residual-magnitude classes
DECAY = 4  # the moving average of residual magnitudes gives the newest volume weight 2^-DECAY
# class k starts where the mean residual magnitude m satisfies 1 + m ≥ 2^(k/2); thresholds in 1/16ths
THRESHOLDS = np.round(16 * (2.0 ** (np.arange(1, LEVELS) / 3) - 1)).astype(np.int64)
CONTEXT_SPATIAL = 0  # then LEVELS contexts for each pass
N_CONTEXTS = 1 + 3 * LEVELS
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
SIDE_CONTEXTS = 5  # side information: mode and counts, inputs, weights, neighbour factors, motion
HEADER = np.dtype("<u4")
INCREMENT = 32  # adaptation speed of the residual coder's model (see entropy.encode_chunks)
PYTHON_STEP = 1 << 14  # decoding work of one side integer (a step of Python, about 10 µs)
NEAR_LOSSLESS_KEYS = ("max_error", "max_error_noise")  # settings newer than format 2's first readers
NAME = "lossless"
MEMBERS = "slice"
EXACT = True
RATE_CONTROL: frozenset[str] = frozenset()
PRESETS: dict = {}
DEFAULT_PRESET = None


@dataclass(frozen=True)
class Config(JsonSettings):
    """Settings of the lossless codec."""

    references: int = setting(32, "--references", "earlier volumes a regression predictor may use", min=1, max=255)
    interlace: int = setting(2, "--interlace", "passes per volume, 1, 2 (checkerboard halves) or 3; a later pass "
                             "also predicts from its neighbours' residuals", min=1, max=3)
    order: str = setting("furthest", "--order", "volume coding order: furthest (b0s, then each shell "
                         "furthest-first) or file", choices=("furthest", "file"))
    qspace: str = setting("laplace", "--qspace", "q-space inpainting tried as a predictor",
                          choices=("laplace", "biharmonic", "off"))
    quantize: float | None = setting(None, "--quantize", "float data: code round(value / STEP) (stated in the "
                                     "archive); integer data need none", above=0, metavar="STEP")
    motion: bool = setting(False, "--motion", "register every volume of a slice to the first (in-plane rigid, "
                           "SimpleITK) and predict from aligned volumes; the transforms are stored")
    max_error: int | None = setting(None, "--max-error", "near-lossless: every voxel within ±E of the original "
                                    "(integer data, stored units; 0: lossless)", min=0, max=MAX_ERROR_LIMIT,
                                    metavar="E")
    max_error_noise: float | None = setting(None, "--max-error-noise", "near-lossless with E = ⌊K·σ⌋, σ the "
                                            "noise estimate (Marchenko–Pastur PCA)", min=0, max=1000, metavar="K")
    least_lanes: int = setting(16, "--least-lanes", "rANS lanes of a slice's residual stream at least (a small "
                               "slice decodes in fewer steps; 4 bytes a lane)", min=1, max=4096)

    def __post_init__(self) -> None:
        """`InputError` for a setting out of its bounds, or both error bounds given."""
        super().__post_init__()
        if self.max_error is not None and self.max_error_noise is not None:
            raise InputError("give --max-error or --max-error-noise, not both")

    @classmethod
    def from_json(cls, d: dict) -> Config:
        """The settings as stored; archives from before `least_lanes` coded with one lane per 4,096 symbols and
        no least number (1).

        Parameters
        ----------
        d : dict

        Returns
        -------
        Config

        Raises
        ------
        ArchiveError
            For settings that are not valid.
        """
        return super().from_json({"least_lanes": 1, **d})

    def to_json(self) -> dict:
        """The settings as the manifest stores them; the near-lossless ones only when given, so that a plain
        lossless archive reads as it did in readers that predate them.

        Returns
        -------
        dict
            Field name → JSON value.
        """
        return {k: v for k, v in super().to_json().items() if v is not None or k not in NEAR_LOSSLESS_KEYS}


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
    """Never: exactness is asked for, not suggested.

    Parameters
    ----------
    has_gradients : bool
    volumes : int
    diffusion_like : bool

    Returns
    -------
    bool
        False.
    """
    return False


# --- the codec interface -------------------------------------------------------------------------------


def encode(volume, config: Config, progress=None) -> list[EncodedSlice]:
    """Code every axial slice losslessly, or near-losslessly within ±E (`error_bound`).

    Predictors: LOCO-I's median edge detector (Weinberger, Seroussi and Sapiro, "The LOCO-I lossless image
    compression algorithm", IEEE TIP 2000), least-squares regression on earlier volumes, and q-space PDE
    inpainting, after the lossless dMRI paper (see the module docstring).

    Parameters
    ----------
    volume : Volume4D
        Integer data, or float data with `config.quantize`.
    config : Config
    progress : callable or None
        Receives progress events (dicts).

    Returns
    -------
    list of EncodedSlice
        One per axial slice, each with its member; near-lossless, with the bound E ("max_error").

    Raises
    ------
    InputError
        For float data without a quantisation step, a step on integer data, values that do not fit, or an
        error bound on data other than integers of at most 32 bits.
    """
    bound = error_bound(volume.data, config)
    data = coded_integers(volume.data, config)
    g = volume.gradients
    bvals, bvecs = (None, None) if g is None else (g.bvals, g.bvecs)
    order = (list(range(data.shape[3])) if config.order == "file" or g is None
             else _qspace().coding_order(bvals, bvecs, data.shape[3]))
    directions = None if g is None else _voxel_directions(volume)
    qspace_rows = _qspace_rows(order, bvals, directions, config.qspace)
    emit = progress or (lambda event: None)
    nz = data.shape[2]
    emit({"event": "start", "slices": nz, "networks": 0, "epochs": 0, "device": "cpu"})
    out = []
    for z in range(nz):
        image = data[:, :, z, :]
        member, decoded = encode_slice(image, order, qspace_rows, config, (bvals, directions), bound)
        entry = {"kind": "lossless", "integers": image.dtype.name, "order": order, "sha256": sha256_hex(decoded)}
        if bound:
            entry["max_error"] = bound
        out.append(EncodedSlice(entry, member))
        emit({"event": "slice", "slice": z, "slices": nz, "kind": "lossless", "bytes": len(member)})
    return out


def placeholders(volume, config: Config) -> list[EncodedSlice]:
    """Lossless coding has no rate to control: entries without members.

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    list of EncodedSlice
    """
    return [EncodedSlice({"kind": "lossless"}, b"") for _ in range(volume.shape[2])]


def check_slices(config: Config, manifest: dict) -> int:
    """Check every entry: a lossless entry (coded integers as the settings and dtype imply, a coding order, a
    SHA-256) with its member; an error bound only on integers of at most 32 bits.

    Parameters
    ----------
    config : Config
    manifest : dict

    Returns
    -------
    int
        The decoding work.

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
    nx, ny, _, nv = manifest["shape"]
    dtype = np.dtype(manifest["dtype"])
    if (config.quantize is None) != (dtype.kind in "iu"):
        raise ArchiveError(f"{dtype.name} data {'need a' if config.quantize is None else 'take no'} quantisation step")
    integers = dtype.name if config.quantize is None else "int32"
    for entry in manifest["slices"]:
        z, order = entry["index"], entry.get("order")
        if not (entry["kind"] == "lossless" and codec_keys(entry) == {"integers", "order", "sha256"}
                and entry["integers"] == integers and isinstance(entry["sha256"], str)
                and SHA256.fullmatch(entry["sha256"]) and entry["member"] is not None):
            raise ArchiveError(f"slice {z}: a lossless entry needs integers {integers}, order, sha256 and a member")
        if not (isinstance(order, list) and all(map(is_int, order)) and sorted(order) == list(range(nv))):
            raise ArchiveError(f"slice {z}: the coding order is not a permutation of the {nv} volumes")
        if "max_error" in entry and (config.quantize is not None or dtype.itemsize > 4):
            raise ArchiveError(f"slice {z}: near-lossless coding is for integers of at most 32 bits")
    return len(manifest["slices"]) * decode_work(nx * ny, nv)


def decode_work(pixels: int, volumes: int) -> int:
    """Work of decoding a member: per voxel, every earlier volume as an input and the coder's arithmetic; per
    volume, its side integers one by one.

    Parameters
    ----------
    pixels : int
        Pixels per slice.
    volumes : int

    Returns
    -------
    int
    """
    return pixels * volumes * (volumes + 128) + PYTHON_STEP * volumes * (volumes + 32)


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple) -> np.ndarray:
    """Decode the slice's voxels: the coded integers (near-lossless: as reconstructed, within ±max_error of
    the original), times the quantisation step if one was used.

    Parameters
    ----------
    config : Config
    entry : dict
    member : bytes or None
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    ndarray, shape (x, y, volumes)
        In the data's dtype.

    Raises
    ------
    ArchiveError
        For a missing or corrupt member, a bad coding order or voxels that do not match the SHA-256.
    """
    nx, ny, _, nv = shape
    if member is None:
        raise ArchiveError("a lossless slice has no member")
    order = [int(v) for v in entry["order"]]
    if sorted(order) != list(range(nv)):
        raise ArchiveError("the slice's coding order is not a permutation of the volumes")
    dtype = np.dtype(entry["integers"])
    image = decode_member(member, (nx, ny, nv), dtype, order, config, entry.get("max_error", 0))
    if sha256_hex(image) != entry["sha256"]:
        raise ArchiveError("decoded voxels do not match the stored SHA-256: the archive is damaged")
    return image if config.quantize is None else image * float(config.quantize)  # an int step: no int overflow


def error_bound(data: np.ndarray, config: Config) -> int:
    """The near-lossless bound E that the settings ask for on these data: `max_error`, or ⌊max_error_noise · σ⌋
    with σ the noise estimate (`noise.estimate_sigma`); 0 (lossless) when neither is given.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, volumes)
    config : Config

    Returns
    -------
    int
        E ≥ 0, in the data's stored units.

    Raises
    ------
    InputError
        For a bound on float data, or E > 0 on 64-bit integers.
    """
    if config.max_error is None and config.max_error_noise is None:
        return 0
    if data.dtype.kind not in "iu":
        raise InputError(f"--max-error and --max-error-noise are for integer data, not {data.dtype.name} "
                         "(--quantize STEP codes float data losslessly after rounding)")
    if config.max_error is not None:
        bound = config.max_error
    else:
        from ..noise import estimate_sigma

        bound = min(math.floor(config.max_error_noise * estimate_sigma(data)), MAX_ERROR_LIMIT)
    if bound and data.dtype.itemsize > 4:
        raise InputError(f"near-lossless coding is for integers of at most 32 bits, not {data.dtype.name}")
    return int(bound)


def coded_integers(data: np.ndarray, config: Config) -> np.ndarray:
    """The integer array the codec codes: the data itself, or round(data / quantize) for float data.

    Parameters
    ----------
    data : ndarray
    config : Config

    Returns
    -------
    ndarray
        Integers.

    Raises
    ------
    InputError
        For a step on integer data, float data without one, non-finite values or a step too small.
    """
    if data.dtype.kind in "iu":
        if config.quantize is not None:
            raise InputError("--quantize is for float data; integer data is coded as it is")
        return data
    if config.quantize is None:
        raise InputError(f"the lossless codec needs integer data, not {data.dtype.name}; "
                         "give a quantisation step (--quantize STEP) to code round(value / STEP)")
    if not np.all(np.isfinite(data)):
        raise InputError("the data contain NaN or infinite values")
    scaled = np.rint(data.astype(np.float64) / config.quantize)
    if np.abs(scaled).max(initial=0) >= 2**31:
        raise InputError("the quantisation step is too small for 32-bit integers")
    return scaled.astype(np.int32)


# --- integers in modular arithmetic --------------------------------------------------------------------


class Arithmetic:
    """Values of an integer dtype as int64; coded residuals modulo 2^bits (lossless), or near-lossless (`max_error`
    E > 0, integers of at most 32 bits) the residuals quantised to steps of 2E + 1."""

    def __init__(self, dtype: np.dtype, max_error: int = 0) -> None:
        self.dtype = np.dtype(dtype)
        self.bits = 8 * self.dtype.itemsize
        info = np.iinfo(self.dtype)
        self.wide = self.bits == 64
        self.lo, self.hi = int(info.min), int(info.max)
        self.max_error, self.step = int(max_error), 2 * int(max_error) + 1

    def values(self, data: np.ndarray) -> np.ndarray:
        """int64 copy (64-bit unsigned values wrap; all arithmetic is modular anyway)."""
        return data.astype(np.int64) if not self.wide else data.view(np.int64).copy()

    def restore(self, values: np.ndarray) -> np.ndarray:
        """Values back in the data's dtype.

        Parameters
        ----------
        values : ndarray of int64

        Returns
        -------
        ndarray
        """
        return values.astype(self.dtype) if not self.wide else values.view(self.dtype)

    def clip(self, prediction: np.ndarray) -> np.ndarray:
        """Predictions clipped to the dtype's range (64-bit types: as they are).

        Parameters
        ----------
        prediction : ndarray of int64

        Returns
        -------
        ndarray of int64
        """
        return prediction if self.wide else np.clip(prediction, self.lo, self.hi)

    def residuals(self, values: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """Signed residuals in [−2^(bits−1), 2^(bits−1))."""
        if self.wide:
            return values - prediction
        half = 1 << (self.bits - 1)
        return np.mod(values - prediction + half, 1 << self.bits) - half

    def quantise(self, values: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """The coded residuals: lossless, `residuals`; near-lossless, JPEG-LS's quantiser (ITU-T T.87, A.4.4)
        q = sign(d)·⌊(|d| + E) / (2E + 1)⌋ of d = value − prediction, so that prediction + q·(2E + 1) is within
        ±E of the value.

        Parameters
        ----------
        values, prediction : ndarray of int64

        Returns
        -------
        ndarray of int64
        """
        if not self.max_error:
            return self.residuals(values, prediction)
        d = values - prediction
        return np.sign(d) * ((np.abs(d) + self.max_error) // self.step)

    def add(self, prediction: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Values from predictions and coded residuals (near-lossless: dequantised, clamped to the dtype)."""
        if self.max_error:
            return np.clip(prediction + residuals * self.step, self.lo, self.hi)
        if self.wide:
            return prediction + residuals
        return np.mod(prediction + residuals - self.lo, 1 << self.bits) + self.lo


def zigzag(r: np.ndarray) -> np.ndarray:
    """Signed integers to unsigned: 0, −1, 1, −2, ... → 0, 1, 2, 3, ...

    Parameters
    ----------
    r : ndarray of int64

    Returns
    -------
    ndarray of uint64
    """
    return ((r << 1) ^ (r >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of `zigzag`.

    Parameters
    ----------
    u : ndarray of uint64

    Returns
    -------
    ndarray of int64
    """
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


# --- one slice -----------------------------------------------------------------------------------------


@dataclass
class Step:
    """How one volume is predicted: mode, the coding positions of its inputs, their fixed-point weights
    (the last is the constant, for regression) and the neighbour factor of each pass after the first."""

    mode: int
    inputs: list[int]
    weights: list[int]
    factors: list[int] = field(default_factory=list)
    motion: list[int] = field(default_factory=list)  # with motion: the transforms to and from the first

    def side(self) -> list[list[int]]:
        """The stored groups of integers: mode and counts, inputs, weights, factors, motion; group i is
        coded in side context i."""
        return [[self.mode, len(self.inputs), len(self.weights)], self.inputs, self.weights, self.factors,
                self.motion]


def encode_slice(image: np.ndarray, order: list[int], qspace_rows: dict, config: Config,
                 gradients: tuple = (None, None), max_error: int = 0) -> tuple[bytes, np.ndarray]:
    """Code one slice of integers, losslessly or within ±`max_error`.

    Parameters
    ----------
    image : ndarray, shape (x, y, volumes)
        Integers.
    order : list of int
        The coding order of the volumes.
    qspace_rows : dict
        Coding position t → (positions, float weights) of q-space inpainting, where available.
    config : Config
    gradients : tuple
        (b-values, directions in voxel axes), needed only to rotate the directions with `config.motion`.
    max_error : int
        The near-lossless bound E (0: lossless; E > 0 for integers of at most 32 bits).

    Returns
    -------
    bytes
        The member.
    ndarray, shape (x, y, volumes)
        The slice as it decodes (`image` itself when lossless).
    """
    nx, ny, nv = image.shape
    ar = Arithmetic(image.dtype, max_error)
    values = ar.values(image).reshape(nx * ny, nv)[:, order]  # columns in coding order
    transforms = None
    if config.motion:
        transforms, angles = _register(values, (nx, ny))
        bvals, directions = gradients
        if directions is not None and any(angles):
            qspace_rows = _qspace_rows(order, bvals, _rotated(directions, order, angles), config.qspace)
    magnitude = Magnitudes(nx, ny)
    passes = _passes(nx, ny, config.interlace)
    steps, symbols, contexts, chunks = [], [], [], []
    for t in range(nv):
        best = None
        view = values if transforms is None else _aligned(values, t, range(t), transforms, (nx, ny))
        for step in _candidates(view, t, qspace_rows.get(t), config, (nx, ny)):
            if transforms is not None and t:
                step.motion = [int(v) for v in transforms[t].ravel()]
            coded = _code_volume(view, t, step, ar, magnitude, passes)
            cost = _cost(coded[1], coded[2]) + 12 * sum(len(g) for g in step.side())
            if best is None or cost < best[0]:
                best = (cost, step, coded)
        _, step, (residuals, coded, ctx, sizes, decoded) = best
        values[:, t] = decoded  # later volumes are predicted from what the decoder has
        steps.append(step)
        symbols.append(coded)
        contexts.append(ctx)
        chunks += sizes
        magnitude.add(residuals)
    member = _pack(steps, np.concatenate(symbols), np.concatenate(contexts), chunks, config.least_lanes)
    return member, _file_order(values, order, ar, (nx, ny, nv))


def _file_order(values: np.ndarray, order: list[int], ar: Arithmetic, shape: tuple) -> np.ndarray:
    """The columns of `values` (coding order) as an image in the data's dtype, volumes in file order."""
    out = np.empty_like(values)
    out[:, order] = values
    return ar.restore(out).reshape(shape)


def decode_member(member: bytes, shape: tuple, dtype: np.dtype, order: list[int], config: Config,
                  max_error: int = 0) -> np.ndarray:
    """Inverse of `encode_slice`.

    Parameters
    ----------
    member : bytes
    shape : tuple of int
        The slice's shape (x, y, volumes).
    dtype : numpy.dtype
    order : list of int
        The coding order of the volumes.
    config : Config
    max_error : int
        The near-lossless bound E it was coded with (0: lossless).

    Returns
    -------
    ndarray, shape (x, y, volumes)
        In `dtype`.

    Raises
    ------
    ArchiveError
        For a truncated or malformed member.
    """
    nx, ny, nv = shape
    ar = Arithmetic(dtype, max_error)
    passes = _passes(nx, ny, config.interlace)
    steps, residual_stream, raw = _unpack(member, nv, len(passes) - 1, config.motion)
    transforms = _transforms(steps) if config.motion else None
    chunks = [size for step in steps for size in _chunk_sizes(step, passes)]
    decoder = entropy.ChunkDecoder(residual_stream, entropy.TOKENS, N_CONTEXTS, sum(chunks),
                                   _lanes(chunks, config.least_lanes), INCREMENT)
    bits = entropy.BitReader(raw)
    values = np.zeros((nx * ny, nv), dtype=np.int64)
    magnitude = Magnitudes(nx, ny)

    def read(contexts: np.ndarray) -> np.ndarray:
        tokens = decoder.next(contexts)
        return unzigzag(entropy.join_integers(tokens, bits.read(entropy.token_bits(tokens))))

    for t, step in enumerate(steps):
        if step.mode == SPATIAL:
            r = read(np.full(nx * ny, CONTEXT_SPATIAL))
            residuals = r.reshape(nx, ny)
            values[:, t] = _med_sequential(ar, (nx, ny), lambda i, j, _: residuals[i, j])[0].ravel()
        else:
            view = values if transforms is None else _aligned(values, t, step.inputs, transforms, (nx, ny))
            prediction = _linear(view, step, ar, (nx, ny))
            r = _run_passes(prediction, passes, step, magnitude, ar, read=read)
            values[:, t] = ar.add(prediction, r)  # _run_passes refined the prediction in place
        magnitude.add(r)
    decoder.close()
    bits.close()
    return _file_order(values, order, ar, shape)


class Magnitudes:
    """Per voxel, a moving average of the residual magnitudes of the volumes coded so far (weight 1/8 for
    the newest), and the context classes it gives. Integer arithmetic with 8 fractional bits."""

    def __init__(self, nx: int, ny: int) -> None:
        self.shape, self.total, self.weight = (nx, ny), np.zeros((nx, ny), dtype=np.int64), 0

    def add(self, residuals: np.ndarray) -> None:
        """Take the residuals of the volume just coded into the moving average.

        Parameters
        ----------
        residuals : ndarray of int64
        """
        magnitude = np.minimum(np.abs(residuals), 1 << 30).reshape(self.shape) << 8
        self.total += magnitude - (self.total >> DECAY)
        self.weight += (1 << 8) - (self.weight >> DECAY)

    def context(self, where: np.ndarray, pass_index: int, neighbour_magnitude: np.ndarray | None) -> np.ndarray:
        """Context per voxel in `where` (flat indices) in pass `pass_index`: the class of the average
        magnitude over the 3×3 box; with the neighbours' magnitudes (summed over 4, one per voxel of
        `where`), of the mean of that and their mean."""
        box = _box_sum(self.total).ravel()[where] * 16  # 16 · 9 · weight · average magnitude
        count = 9 * max(self.weight, 1 << 8)
        first = 1 + pass_index * LEVELS
        if neighbour_magnitude is None:
            return first + _level(box, count)
        near = np.minimum(neighbour_magnitude, 1 << 32) * 16
        # mean of (box / count) and (near / 4): (4·box + count·near) / (8·count)
        return first + _level(4 * box + count * near, 8 * count)


def _level(scaled_sum: np.ndarray, count: int) -> np.ndarray:
    """Number of thresholds T with scaled_sum ≥ count·T (scaled_sum is 16 × the magnitude sum)."""
    return (scaled_sum[:, None] >= count * THRESHOLDS[None, :]).sum(axis=1)


def _candidates(values: np.ndarray, t: int, qspace_row, config: Config, size: tuple) -> list[Step]:
    if t == 0:
        return [Step(SPATIAL, [], [])]
    out = [Step(SPATIAL, [], []), _regression(values, t, config, size)]
    if qspace_row is not None:
        positions, weights = qspace_row
        out.append(Step(QSPACE, list(positions), _fixed_point(weights)))
    return out


def _regression(values: np.ndarray, t: int, config: Config, size: tuple) -> Step:
    """Least-squares weights over the most correlated earlier volumes (+ neighbours of the best, + 1)."""
    known = values[:, :t].astype(np.float64)
    target = values[:, t].astype(np.float64)
    spread = known.std(axis=0) * target.std()
    score = np.abs(((known - known.mean(0)) * (target - target.mean())[:, None]).mean(0))
    score = np.where(spread > 0, score / np.where(spread > 0, spread, 1), -1)
    inputs = [int(i) for i in np.argsort(-score, kind="stable")[:config.references]]
    step = Step(REGRESSION, inputs, [0] * (len(inputs) + 5))
    design = _design(values, step, size).astype(np.float64)
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    step.weights = _fixed_point(weights)
    return step


def _fixed_point(weights: np.ndarray) -> list[int]:
    limit = WEIGHT_LIMIT - 1
    return [int(w) for w in np.clip(np.rint(np.nan_to_num(np.asarray(weights, dtype=np.float64))
                                            * (1 << FRACTION_BITS)), -limit, limit)]


def _design(values: np.ndarray, step: Step, size: tuple) -> np.ndarray:
    """int64 columns the weights multiply: the inputs, the best input's neighbours (if the weights
    have room for them), a column of ones (regression only)."""
    columns = [values[:, i] for i in step.inputs]
    if step.mode == REGRESSION:
        if len(step.weights) == len(step.inputs) + 5:
            best = values[:, step.inputs[0]].reshape(size)
            columns += [_shifted(best, dx, dy).ravel() for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1))]
        columns.append(np.ones(values.shape[0], dtype=np.int64))
    return np.stack(columns, axis=1)


def _linear(values: np.ndarray, step: Step, ar: Arithmetic, size: tuple) -> np.ndarray:
    """Fixed-point prediction Σ weight · column, rounded, clipped to the dtype."""
    design = _design(values, step, size)
    total = np.zeros(values.shape[0], dtype=np.int64)
    for column, weight in zip(design.T, step.weights):
        total += column * weight
    return ar.clip(_scaled(total, 0))


def _scaled(total: np.ndarray, extra_shift: int) -> np.ndarray:
    """Round total / 2^(FRACTION_BITS + extra_shift) to the nearest integer (int64, arithmetic shift)."""
    shift = FRACTION_BITS + extra_shift
    return (total + (1 << (shift - 1))) >> shift


def _code_volume(values, t, step, ar, magnitude, passes):
    """Coded residuals (flat, voxel order), then in coding order the zigzagged residuals and their contexts,
    the chunk sizes, and the decoded values of coding position t predicted with `step` (whose factors it
    fits)."""
    target = values[:, t]
    if step.mode == SPATIAL:
        nx, ny = magnitude.shape
        if ar.max_error:  # predicted from reconstructed neighbours, as the decoder does
            image = target.reshape(nx, ny)
            decoded, r = _med_sequential(ar, (nx, ny), lambda i, j, p: ar.quantise(image[i, j], p))
            decoded, r = decoded.ravel(), r.ravel()
        else:
            decoded, r = target, ar.residuals(target, _med_predict(target.reshape(nx, ny), ar).ravel())
        return r, zigzag(r), np.full(r.size, CONTEXT_SPATIAL), [r.size], decoded
    contexts = []
    prediction = _linear(values, step, ar, magnitude.shape)
    r = _run_passes(prediction, passes, step, magnitude, ar, target=target, contexts=contexts)
    order = np.concatenate([where for where, _ in passes])
    return r, zigzag(r[order]), np.concatenate(contexts), [where.size for where, _ in passes], \
        ar.add(prediction, r)  # _run_passes refined the prediction in place


def _run_passes(prediction, passes, step, magnitude, ar, target=None, contexts=None, read=None) -> np.ndarray:
    """The coded residuals of one volume, pass by pass; a pass after the first adds its factor times the mean
    (dequantised) residual of its (earlier-pass) neighbours to the prediction (in place). Encoder: from `target`,
    fitting step.factors and appending each pass's contexts to `contexts`. Decoder: `read(contexts)` per
    pass."""
    r = np.zeros(prediction.size, dtype=np.int64)
    shape = magnitude.shape
    if target is not None:
        step.factors = []
    for k, (where, offsets) in enumerate(passes):
        p = prediction[where]
        if offsets:
            near = _neighbour_sum(r * ar.step, shape, offsets)[where]
            if target is not None:
                step.factors.append(_factor(ar.residuals(target[where], p), near))
            p = ar.clip(p + _scaled(step.factors[k - 1] * near, 2))
            prediction[where] = p
            ctx = magnitude.context(where, k, _neighbour_sum(np.abs(r), shape, offsets)[where])
        else:
            ctx = magnitude.context(where, k, None)
        if target is None:
            r[where] = read(ctx)
        else:
            r[where] = ar.quantise(target[where], p)
            contexts.append(ctx)
    return r


def _factor(residuals: np.ndarray, neighbour_sum: np.ndarray) -> int:
    """Fixed-point least-squares factor f of residual ≈ f · neighbour_sum / 4."""
    x = neighbour_sum.astype(np.float64) / 4
    denominator = float(x @ x)
    return _fixed_point([float(x @ residuals) / denominator])[0] if denominator else 0


def _cost(coded: np.ndarray, contexts: np.ndarray) -> float:
    """Bits of coding the zigzagged residuals `coded` with their contexts: the tokens at their empirical
    entropy, plus the verbatim bits."""
    tokens, nbits, _ = entropy.split_integers(coded)
    bits = float(nbits.sum())
    pairs = contexts * entropy.TOKENS + tokens
    _, counts = np.unique(pairs, return_counts=True)
    _, totals = np.unique(contexts, return_counts=True)
    return bits - float((counts * np.log2(counts)).sum()) + float((totals * np.log2(totals)).sum())


def _passes(nx: int, ny: int, interlace: int) -> list[tuple[np.ndarray, tuple]]:
    """The passes of a volume: flat voxel indices and the offsets of the neighbours (all in earlier
    passes) whose residuals refine the prediction. 1: all voxels; 2: checkerboard halves (the second with
    its direct neighbours); 3: even rows and columns, then odd rows and columns (diagonal neighbours), then
    the rest (direct neighbours). Empty passes are left out."""
    x, y = np.meshgrid(np.arange(nx) % 2, np.arange(ny) % 2, indexing="ij")
    x, y = x.ravel(), y.ravel()
    if interlace == 1:
        passes = [(np.arange(nx * ny), ())]
    elif interlace == 2:
        passes = [(np.flatnonzero((x + y) % 2 == 0), ()), (np.flatnonzero((x + y) % 2 == 1), DIRECT)]
    else:
        passes = [(np.flatnonzero((x == 0) & (y == 0)), ()), (np.flatnonzero((x == 1) & (y == 1)), DIAGONAL),
                  (np.flatnonzero(x != y), DIRECT)]
    return [p for p in passes if p[0].size]


def _chunk_sizes(step: Step, passes: list) -> list[int]:
    if step.mode == SPATIAL:
        return [sum(where.size for where, _ in passes)]
    return [where.size for where, _ in passes]


def _neighbour_sum(residuals: np.ndarray, shape: tuple, offsets: tuple) -> np.ndarray:
    """Sum of the residuals at `offsets` from each voxel (zero outside the image), flat."""
    nx, ny = shape
    padded = np.pad(residuals.reshape(nx, ny), 1)
    return sum(padded[1 + dx:1 + dx + nx, 1 + dy:1 + dy + ny] for dx, dy in offsets).ravel()


def _box_sum(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, 1)
    nx, ny = image.shape
    return sum(padded[dx:dx + nx, dy:dy + ny] for dx in range(3) for dy in range(3))


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """image[x + dx, y + dy], repeating the edge outside."""
    padded = np.pad(image, 1, mode="edge")
    nx, ny = image.shape
    return padded[1 + dx:1 + dx + nx, 1 + dy:1 + dy + ny]


def _med(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I median edge detector from left a, upper b, upper-left c."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= high, low, np.where(c <= low, high, a + b - c))


def _med_predict(image: np.ndarray, ar: Arithmetic) -> np.ndarray:
    """MED prediction of every voxel from its true causal neighbours (the encoder's view)."""
    a = np.zeros_like(image)
    b = np.zeros_like(image)
    c = np.zeros_like(image)
    a[:, 1:], b[1:, :], c[1:, 1:] = image[:, :-1], image[:-1, :], image[:-1, :-1]
    prediction = ar.clip(_med(a, b, c))
    prediction[0, 1:], prediction[1:, 0] = image[0, :-1], image[:-1, 0]
    prediction[0, 0] = 0
    return prediction


def _med_sequential(ar: Arithmetic, shape: tuple, residual) -> tuple[np.ndarray, np.ndarray]:
    """MED prediction from decoded neighbours, one anti-diagonal at a time: `residual(i, j, prediction)` gives
    the coded residuals of the voxels (i, j) (the decoder reads them, the near-lossless encoder quantises).
    Returns the decoded image and the residuals."""
    image, residuals = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    nx, ny = shape
    for k in range(nx + ny - 1):
        i = np.arange(max(0, k - ny + 1), min(nx, k + 1))
        j = k - i
        a = np.where(j > 0, image[i, np.maximum(j - 1, 0)], 0)
        b = np.where(i > 0, image[np.maximum(i - 1, 0), j], 0)
        c = np.where((i > 0) & (j > 0), image[np.maximum(i - 1, 0), np.maximum(j - 1, 0)], 0)
        prediction = ar.clip(_med(a, b, c))
        prediction = np.where(i == 0, a, np.where(j == 0, b, prediction))
        residuals[i, j] = residual(i, j, prediction)
        image[i, j] = ar.add(prediction, residuals[i, j])
    return image, residuals


# --- member bytes --------------------------------------------------------------------------------------


def _lanes(chunks: list[int], least: int) -> int:
    """One lane per `entropy.SYMBOLS_PER_LANE` symbols, at least `least`, at most the smallest chunk and 4,096."""
    return int(max(1, min(min(chunks), max(least, sum(chunks) // entropy.SYMBOLS_PER_LANE), 4096)))


def _pack(steps: list[Step], coded: np.ndarray, contexts: np.ndarray, chunks: list[int], least_lanes: int) -> bytes:
    """Member bytes: header (5 uint32: the number of side integers, then the byte lengths of the side
    stream, its verbatim bits, the residual stream and its verbatim bits), then those four parts."""
    groups = [(i, group) for step in steps for i, group in enumerate(step.side())]
    side_values = np.array([v for _, group in groups for v in group], dtype=np.int64)
    side_contexts = np.array([i for i, group in groups for _ in group], dtype=np.int64)
    side_tokens, side_nbits, side_extra = entropy.split_integers(zigzag(side_values))
    side = entropy.encode_chunks(side_tokens, entropy.TOKENS, side_contexts, SIDE_CONTEXTS,
                                 [len(group) for _, group in groups], 1)
    tokens, nbits, extra = entropy.split_integers(coded)
    stream = entropy.encode_chunks(tokens, entropy.TOKENS, contexts, N_CONTEXTS, chunks, _lanes(chunks, least_lanes),
                                   INCREMENT)
    parts = [side, entropy.pack_bits(side_extra, side_nbits), stream, entropy.pack_bits(extra, nbits)]
    return np.array([side_values.size] + [len(p) for p in parts], dtype=HEADER).tobytes() + b"".join(parts)


def _unpack(member: bytes, nv: int, n_factors: int, motion: bool = False) -> tuple[list[Step], bytes, bytes]:
    """Inverse of `_pack`: the steps of the nv volumes (n_factors each unless spatial; with `motion`, the
    transforms of every volume after the first), the residual stream and its verbatim bits."""
    if len(member) < 20:
        raise ArchiveError("lossless member is truncated")
    n_side, *lengths = (int(v) for v in np.frombuffer(member, dtype=HEADER, count=5))
    if 20 + sum(lengths) != len(member):
        raise ArchiveError("lossless member is truncated or has trailing bytes")
    parts, at = [], 20
    for n in lengths:
        parts.append(member[at:at + n])
        at += n
    side_stream, side_raw, stream, raw = parts
    decoder, bits = entropy.ChunkDecoder(side_stream, entropy.TOKENS, SIDE_CONTEXTS, n_side, 1), \
        entropy.BitReader(side_raw)

    def read(count: int, context: int) -> list[int]:
        if count > 4096:
            raise ArchiveError("malformed prediction record")
        tokens = decoder.next(np.full(count, context))
        return unzigzag(entropy.join_integers(tokens, bits.read(entropy.token_bits(tokens)))).tolist()

    steps = []
    for t in range(nv):
        mode, n_inputs, n_weights = read(3, 0)
        step = Step(mode, read(n_inputs, 1), read(n_weights, 2), read(0 if mode == SPATIAL else n_factors, 3),
                    read(12 if motion and t else 0, 4))
        _check_step(step, t)
        steps.append(step)
    decoder.close()
    bits.close()
    return steps, stream, raw


def _check_step(step: Step, t: int) -> None:
    n_in, n_w = len(step.inputs), len(step.weights)
    shapes = {SPATIAL: n_in == n_w == 0, QSPACE: n_in == n_w > 0,
              REGRESSION: n_in > 0 and n_w in (n_in + 1, n_in + 5)}
    if (not shapes.get(step.mode, False) or any(not 0 <= i < t for i in step.inputs)
            or len(set(step.inputs)) != n_in
            or any(abs(w) >= WEIGHT_LIMIT for w in step.weights + step.factors + step.motion)):
        raise ArchiveError(f"coding position {t}: malformed prediction record")


def _register(values: np.ndarray, size: tuple) -> tuple[np.ndarray, list[float]]:
    """Per coding position, the fixed-point transforms from the first image's indices to the position's
    and back, as one (positions, 2, 2, 3) array, and the rotation angles (radians)."""
    from .. import motion

    first = values[:, 0].reshape(size)
    transforms, angles = [np.stack([motion.IDENTITY, motion.IDENTITY])], [0.0]
    for t in range(1, values.shape[1]):
        forward, angle = motion.register(first, values[:, t].reshape(size))
        transforms.append(np.stack([forward, motion.inverse(forward)]))
        angles.append(angle)
    return np.stack(transforms), angles


def _transforms(steps: list[Step]) -> np.ndarray:
    from .. import motion

    identity = np.stack([motion.IDENTITY, motion.IDENTITY])
    return np.stack([identity] + [np.array(step.motion, dtype=np.int64).reshape(2, 2, 3) for step in steps[1:]])


def _aligned(values: np.ndarray, t: int, columns, transforms: np.ndarray, size: tuple) -> np.ndarray:
    """`values` with each of `columns` (coding positions before t) resampled into position t's frame."""
    from .. import motion

    view = values.copy()
    to_first = transforms[t, 1]
    for u in columns:
        view[:, u] = motion.resample(values[:, u].reshape(size), motion.compose(transforms[u, 0], to_first)).ravel()
    return view


def _voxel_directions(volume) -> np.ndarray:
    """Gradient directions in voxel axes (FSL vectors have x flipped when the IJK→RAS determinant is
    positive; NRRD measurement-frame vectors are taken as they are)."""
    g = volume.gradients
    directions = np.array(g.bvecs, dtype=np.float64)
    if g.convention == "fsl" and np.linalg.det(volume.ijk_to_ras[:3, :3]) > 0:
        directions[:, 0] *= -1
    return directions


def _rotated(directions: np.ndarray, order: list[int], angles: list[float]) -> np.ndarray:
    """Directions (voxel axes) turned into the first volume's frame: volume order[t] rotated back by
    angles[t] in the slice plane."""
    out = directions.copy()
    for v, angle in zip(order, angles):
        c, s = np.cos(-angle), np.sin(-angle)
        out[v, :2] = [c * directions[v, 0] - s * directions[v, 1], s * directions[v, 0] + c * directions[v, 1]]
    return out


def _qspace_rows(order: list[int], bvals, bvecs, kind: str) -> dict:
    """Per coding position, q-space inpainting inputs (positions) and float weights, where available."""
    if kind == "off" or bvals is None:
        return {}
    qs = _qspace()
    labels = qs.shells(bvals)
    rows = {}
    for t, v in enumerate(order):
        if labels[v] == 0:
            continue
        known = [s for s in range(t) if labels[order[s]] == labels[v]]
        members = [order[s] for s in known] + [v]
        weights = qs.inpainting_weights(bvecs[members], list(range(len(known))), len(known), kind)
        if weights is not None:
            rows[t] = (known, weights)
    return rows


def _qspace():
    from .. import qspace

    return qspace

