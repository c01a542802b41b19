"""Compress a `Volume4D` into an `Archive` and back: the codec-independent part of every codec."""

from __future__ import annotations

import gzip
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from .archive import (
    FORMAT_NAME,
    FORMAT_VERSION,
    NOISE_METHOD,
    NOISE_SIGMA,
    Archive,
    check_archive,
    json_number,
    slice_member_name,
)
from .codecs import EncodedSlice, JsonSettings, codec_of, get_codec, sha256_hex, suggest
from .errors import ArchiveError, InputError
from .metrics import Comparison, Metrics, combine, psnr_from_mse, slice_metrics, value_range
from .noise import GLOBAL_BLOCKS, NoiseEstimate, estimate_noise, noise_fraction, snr_loss
from .version import __version__
from .volume import FrameIndex, Gradients, Volume4D

DECODE_BATCH = 24  # the most slices decoded at once by a codec that can (memory: about this many slices' coefficients)
DECODE_WORKERS = 2  # threads, or processes where asked for, that decode batches side by side
PROCESS_VOXELS = 1 << 23  # worker processes only for archives of this many voxels or more (a spawn takes 0.3 s)


def compress(volume: Volume4D, codec: str | None = None, config: JsonSettings | None = None,
             progress: Callable[[dict], None] | None = None, source: dict | None = None,
             noise: NoiseEstimate | bool = True) -> Archive:
    """Encode a volume into an archive.

    The per-slice metrics in the manifest are measured on the archive's own decode, exactly what `decompress`
    returns; an exact codec's entries also get the SHA-256 of that decode, and a near-lossless slice's decode
    (its entry's "max_error" E) is checked to be within ±E of the input. A lossy codec's archive also
    records the noise σ of the volume and how it was found (`estimate_noise`; the manifest's source keys
    `noise_sigma` and `noise_method`), so that its error can be given in units of the noise (`added_noise`).

    Parameters
    ----------
    volume : Volume4D
        The data, shape (x, y, z, volumes), with its geometry and gradients.
    codec : str or None
        A key of `codecs.REGISTRY`; None: the codec whose settings `config` are, or without `config` the one
        `codecs.suggest` names for the volume (`transform` for diffusion data).
    config : Config or None
        The codec's own settings class (its `Config`); None: its `default_config()`.
    progress : callable or None
        Receives the codec's progress events (dicts).
    source : dict or None
        Stored as given in the manifest, e.g. the input file's name and size.
    noise : NoiseEstimate or bool
        True: estimate the noise for a lossy codec, recording nothing when the estimate fails (too few
        volumes, noise-free data); False: record none; a NoiseEstimate of `volume`: record it (for a lossy
        codec).

    Returns
    -------
    Archive
        The manifest and one member per coded slice.

    Raises
    ------
    TypeError
        When `config` is not an instance of the codec's own `Config` class (named in the message).
    InputError
        For an unknown codec or data the codec cannot code.
    """
    if codec is None:
        codec = codec_of(config) if config is not None else suggest(volume.gradients is not None, volume.shape[3])
    module = get_codec(codec)
    if config is None:
        config = module.default_config()
    elif type(config) is not module.Config:
        raise TypeError(f"the {codec} codec takes {_class_name(module.Config)} settings, "
                        f"not {_class_name(type(config))}")
    if module.EXACT or noise is False:
        noise = None
    elif noise is True:
        try:
            noise = estimate_noise(volume, most_blocks=GLOBAL_BLOCKS)
        except InputError:  # the error is then given as PSNR alone
            noise = None
    if noise is not None:
        source = {**(source or {}), NOISE_SIGMA: noise.sigma, NOISE_METHOD: noise.method}
    start = time.monotonic()
    encoded = module.encode(volume, config, progress)
    archive = assemble(volume, codec, config, encoded, source, time.monotonic() - start)
    data, lo, hi = volume.data, *value_range(volume.data)
    metrics = []
    for z, decoded in enumerate(decoded_slices(archive)):
        entry = archive.manifest["slices"][z]
        m = slice_metrics(data[:, :, z], decoded, lo, hi)
        entry["metrics"] = m.to_json()
        if module.EXACT:
            entry["voxels_sha256"] = sha256_hex(decoded)
        if "max_error" in entry:
            _check_error(data[:, :, z], decoded, entry["max_error"], z)
        metrics.append(m)
    archive.manifest["metrics"] = combine(metrics).to_json()
    return archive


def _check_error(original: np.ndarray, decoded: np.ndarray, bound: int, z: int) -> None:
    """`RuntimeError` (nothing is written) unless every decoded integer is within ±bound of the original."""
    error = int(np.abs(decoded.astype(np.int64) - original.astype(np.int64)).max(initial=0))
    if error > bound:
        raise RuntimeError(f"slice {z} decodes with an error of {error}, beyond the bound {bound}")


def assemble(volume: Volume4D, codec: str, config, encoded: list[EncodedSlice], source: dict | None = None,
             seconds: float = 0.0) -> Archive:
    """The archive of an encoded volume, without metrics: manifest and one member per coded slice.

    Parameters
    ----------
    volume : Volume4D
        The volume that was encoded.
    codec : str
        The codec's name.
    config : Config
        The codec's settings.
    encoded : list of EncodedSlice
        The codec's output, one per axial slice.
    source : dict or None
        Stored as given in the manifest.
    seconds : float
        The encoding time, stored in the manifest.

    Returns
    -------
    Archive
    """
    data = volume.data
    lo, hi = value_range(data)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "codec": {"name": codec, "config": config.to_json()},
        "shape": list(volume.shape),
        "dtype": data.dtype.name,
        "ijk_to_ras": volume.ijk_to_ras.tolist(),
        "scaling": [float(s) for s in volume.scaling],
        "value_range": [json_number(lo, data.dtype), json_number(hi, data.dtype)],
        "gradients": _gradients_json(volume.gradients),
        "frames": None if volume.frames is None else asdict(volume.frames),
        "header": volume.header,
        "source": source or {},
        "encode_seconds": round(seconds, 3),
        "slices": [],
    }
    members = {}
    for z, item in enumerate(encoded):
        name = None
        if item.member is not None:
            name = slice_member_name(z)
            members[name] = item.member
        elif item.member_of is not None:
            name = slice_member_name(item.member_of)
        manifest["slices"].append({"index": z, **item.entry, "member": name,
                                   "bytes": len(item.member or b"")})
    return Archive(manifest, members)


def decode_slice(archive: Archive, z: int) -> np.ndarray:
    """Decode one axial slice of an archive (numpy only).

    Parameters
    ----------
    archive : Archive
        A checked archive.
    z : int
        The slice index.

    Returns
    -------
    ndarray, shape (x, y, volumes)
        In the original dtype, clamped to the original's value range.

    Raises
    ------
    ArchiveError
        For a malformed entry, values that are not finite, or voxels that do not match the entry's
        voxels_sha256.
    """
    return _decoded(archive, [z])[0]


def decoded_slices(archive: Archive, processes: bool = False) -> Iterator[np.ndarray]:
    """Every axial slice of an archive, decoded in order (numpy only), as `decode_slice` gives it.

    A codec with the hook `decode_slices` decodes the slices in batches (`decode_batches`; faster: they share its
    steps), `DECODE_WORKERS` batches at a time: in threads, or with `processes` in spawned worker processes,
    which run side by side where threads mostly wait for each other (numpy holds the GIL for much of the many
    small array operations of the entropy decoder: 1.4× on two cores against 1.9×). The others one by one.

    Parameters
    ----------
    archive : Archive
        A checked archive.
    processes : bool
        Decode in worker processes when there are several batches of `PROCESS_VOXELS` voxels or more in all,
        unless this is itself a daemonic process (a Dask worker, which may not start any). They are spawned,
        so the calling script's top level must be guarded by `if __name__ == "__main__":` (Python's rule for
        `multiprocessing`); 3D Slicer cannot spawn them (Slicer issue #7445).

    Yields
    ------
    ndarray, shape (x, y, volumes)
        Slice 0, 1, … in the original dtype, clamped to the original's value range.

    Raises
    ------
    ArchiveError
        As `decode_slice`.
    """
    module = get_codec(archive.manifest["codec"]["name"])
    count = archive.manifest["shape"][2]
    if not hasattr(module, "decode_slices"):
        for z in range(count):
            yield from _decoded(archive, [z])
        return
    batches = decode_batches(count)
    voxels = int(np.prod(archive.manifest["shape"]))
    if processes and len(batches) > 1 and voxels >= PROCESS_VOXELS and not multiprocessing.current_process().daemon:
        pool = ProcessPoolExecutor(DECODE_WORKERS, multiprocessing.get_context("spawn"))
        jobs = pool.map(_decoded, [_with_slices(archive, zs) for zs in batches], batches)
    else:
        pool = ThreadPoolExecutor(DECODE_WORKERS)
        jobs = pool.map(partial(_decoded, archive), batches)
    try:
        for decoded in jobs:
            yield from decoded
    finally:
        pool.shutdown(cancel_futures=True)


def _with_slices(archive: Archive, zs: list[int]) -> Archive:
    """The archive with only the members of slices `zs` (what a worker process is sent)."""
    names = {archive.manifest["slices"][z].get("member") for z in zs}
    return Archive(archive.manifest, {name: data for name, data in archive.members.items() if name in names})


def decode_batches(count: int) -> list[list[int]]:
    """The slices 0 … count − 1 in the batches `decoded_slices` gives a codec's `decode_slices`: as few as can be
    of at most `DECODE_BATCH` slices (a batch costs its steps' overhead once, however many slices share them),
    as even as can be; when there are several, a multiple of `DECODE_WORKERS` of them, so that each worker gets
    as many (one batch is not split for the workers: two threads on small batches are slower than one).

    Parameters
    ----------
    count : int
        Slices, ≥ 0.

    Returns
    -------
    list of list of int
        Consecutive, in order; none empty.
    """
    n = -(-count // DECODE_BATCH)
    if n > 1:
        n = min(-(-n // DECODE_WORKERS) * DECODE_WORKERS, count)
    batches = np.array_split(np.arange(count), max(n, 1))
    return [b.tolist() for b in batches if b.size]


def _decoded(archive: Archive, zs: list[int]) -> list[np.ndarray]:
    """The slices `zs` decoded and checked: in one call of the codec's `decode_slices`, or of its
    `decode_slice` for a single slice."""
    m = archive.manifest
    module = get_codec(m["codec"]["name"])
    config = module.Config.from_json(m["codec"]["config"])
    entries = [m["slices"][z] for z in zs]
    members = [archive.members.get(entry["member"]) if entry.get("member") else None for entry in entries]
    shape = tuple(m["shape"])
    named = f"slice {zs[0]}" if len(zs) == 1 else f"slices {zs[0]}–{zs[-1]}"
    try:
        with np.errstate(all="ignore"):  # damaged weights may overflow: refused below
            if hasattr(module, "decode_slices"):
                decoded = module.decode_slices(config, entries, members, shape)
            else:
                decoded = [module.decode_slice(config, entry, member, shape) for entry, member in zip(entries, members)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(f"{named}: malformed entry ({exc})") from None
    out = []
    for z, entry, values in zip(zs, entries, decoded):
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ArchiveError(f"slice {z} decodes to values that are not finite: the archive is damaged")
        voxels = restore_dtype(values, np.dtype(m["dtype"]), *m["value_range"])
        if "voxels_sha256" in entry and sha256_hex(voxels) != entry["voxels_sha256"]:
            raise ArchiveError(f"slice {z}: decoded voxels do not match the stored SHA-256: the archive is damaged")
        out.append(voxels)
    return out


def decompress(archive: Archive, processes: bool = False) -> Volume4D:
    """Decode a whole archive (numpy only).

    Parameters
    ----------
    archive : Archive
    processes : bool
        Decode in worker processes where that is faster and allowed (`decoded_slices`: the calling script's top
        level must be guarded by `if __name__ == "__main__":`).

    Returns
    -------
    Volume4D
        The decoded data, shape (x, y, z, volumes) in the original dtype, with the stored geometry,
        gradients, frame index and header.

    Raises
    ------
    ArchiveError
        For an archive that fails its checks or a slice that does not decode.
    """
    check_archive(archive)
    m = archive.manifest
    data = np.empty(m["shape"], dtype=np.dtype(m["dtype"]))
    for z, voxels in enumerate(decoded_slices(archive, processes)):
        data[:, :, z] = voxels
    frames = m.get("frames")
    return Volume4D(data, np.array(m["ijk_to_ras"]), _gradients_from_json(m["gradients"]),
                    tuple(m["scaling"]), None if frames is None else FrameIndex(**frames), m.get("header", {}))


def decoded_psnr(data: np.ndarray, slices: Iterable[np.ndarray]) -> float:
    """The PSNR (dB, `metrics.psnr_from_mse`) of a codec's raw slice decodes as `decompress` would return them
    (clamped to the data's range, rounded for integer data): for rate control's trials.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, volumes)
        The original.
    slices : iterable of ndarray, shape (x, y, volumes)
        Slice 0, 1, … as the codec's `decode_slice` gives them.

    Returns
    -------
    float
    """
    lo, hi = value_range(data)
    span = float(hi - lo) or 1.0
    mse = np.mean([np.mean(((restore_dtype(raw, data.dtype, lo, hi).astype(np.float64) - data[:, :, z]) / span) ** 2)
                   for z, raw in enumerate(slices)])
    return psnr_from_mse(float(mse))


def restore_dtype(values: np.ndarray, dtype: np.dtype, lo: float, hi: float) -> np.ndarray:
    """Clamp to [lo, hi], round for integer types, cast to `dtype`.

    Parameters
    ----------
    values : ndarray
        Decoded values; returned as they are when already of `dtype` (an exact codec's).
    dtype : numpy.dtype
        The original data's dtype.
    lo, hi : float
        The original data's value range.

    Returns
    -------
    ndarray
    """
    if values.dtype == dtype:
        return values
    values = np.clip(values, lo, hi)
    if dtype.kind in "iu":
        values = np.rint(values)
    return values.astype(dtype)


def stored_comparison(archive: Archive) -> Comparison:
    """The per-slice and whole metrics recorded in the manifest.

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    Comparison
    """
    m = archive.manifest
    return Comparison([Metrics.from_json(s["metrics"]) for s in m["slices"]], Metrics.from_json(m["metrics"]))


def added_noise(archive: Archive) -> dict | None:
    """A lossy archive's error in units of the noise recorded at encode: D / σ² and the SNR loss
    (`noise.noise_fraction`, `noise.snr_loss`), for the whole image and per slice (each against the global σ).

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    dict or None
        {"sigma": σ in data units, "method": how it was found, "noise_fraction": D / σ², "snr_loss": per cent,
        "slices": [{"noise_fraction", "snr_loss"} per slice]}; None when the archive records no σ (an exact
        codec's, one whose noise could not be estimated, or one written before SirenCompress recorded it).
    """
    m = archive.manifest
    source = m.get("source") or {}
    sigma = source.get(NOISE_SIGMA)
    if sigma is None:
        return None
    span = float(m["value_range"][1]) - float(m["value_range"][0])

    def of(metrics: dict) -> dict:
        return {"noise_fraction": noise_fraction(metrics["mse"], sigma, span),
                "snr_loss": snr_loss(metrics["mse"], sigma, span)}

    return {"sigma": sigma, "method": source.get(NOISE_METHOD, ""), **of(m["metrics"]),
            "slices": [of(entry["metrics"]) for entry in m["slices"]]}


@dataclass
class Sizes:
    """Bytes of an archive and the compression ratios that go with it.

    Attributes
    ----------
    archive_bytes : int
        Size of the .sirz file.
    raw16_bytes : int
        x·y·z·volumes·2: the data as raw 16-bit values.
    input_file_bytes : int or None
        Size of the input file, when known.
    gzip_bytes : int or None
        Size of the gzip-compressed raw voxels, when known.
    """

    archive_bytes: int
    raw16_bytes: int  # x·y·z·v·2
    input_file_bytes: int | None
    gzip_bytes: int | None

    @property
    def ratio_raw16(self) -> float:
        """Raw 16-bit bytes / archive bytes."""
        return self.raw16_bytes / self.archive_bytes

    @property
    def ratio_input_file(self) -> float | None:
        """Input file bytes / archive bytes (None if unknown)."""
        return self.input_file_bytes / self.archive_bytes if self.input_file_bytes else None

    @property
    def ratio_gzip(self) -> float | None:
        """Gzip bytes / archive bytes (None if unknown)."""
        return self.gzip_bytes / self.archive_bytes if self.gzip_bytes else None


def max_error(archive: Archive) -> int | None:
    """The largest error an archive's decode may have, in stored units (before scaling): 0 for a bit-exact codec,
    E for one coded near-losslessly (its slices' "max_error", checked when it was written), None for a codec
    that bounds no voxel's error.

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    int or None
    """
    m = archive.manifest
    if not get_codec(m["codec"]["name"]).EXACT:
        return None
    return max((entry.get("max_error", 0) for entry in m["slices"]), default=0)


def sizes(archive: Archive, archive_bytes: int) -> Sizes:
    """The sizes and compression ratios of an archive.

    Parameters
    ----------
    archive : Archive
    archive_bytes : int
        Size of its .sirz file.

    Returns
    -------
    Sizes
        With the input file's and gzip's bytes from the manifest's "source" when it records them.
    """
    m = archive.manifest
    source = m.get("source") or {}
    return Sizes(archive_bytes, int(np.prod(m["shape"])) * 2, source.get("file_bytes"),
                 source.get("gzip_bytes"))


def gzip_size(data: np.ndarray) -> int:
    """Bytes of gzip (level 6, as `gzip` does by default) of the raw voxel array.

    Parameters
    ----------
    data : ndarray

    Returns
    -------
    int
    """
    return len(gzip.compress(np.ascontiguousarray(data).tobytes(), compresslevel=6, mtime=0))


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _gradients_json(g: Gradients | None) -> dict | None:
    if g is None:
        return None
    return {"convention": g.convention, "bvals": g.bvals.tolist(), "bvecs": g.bvecs.tolist(),
            "measurement_frame": None if g.measurement_frame is None else g.measurement_frame.tolist()}


def _gradients_from_json(d: dict | None) -> Gradients | None:
    if d is None:
        return None
    try:
        return Gradients(d["bvals"], d["bvecs"], d["convention"], d.get("measurement_frame"))
    except InputError as exc:
        raise ArchiveError(f"bad gradients in the archive: {exc}") from None
