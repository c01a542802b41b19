"""Codec "siren": one sine-activation network per axial slice, (x, y) → all V measurements of the voxel.

Paper-faithful defaults (Mancini, Jones, Palombo): 3 sine layers × 256 units and a linear output layer,
w0 = 30, SIREN initialisation, Adam lr 3e-4, 2000 full-batch epochs, MSE on data min–max normalised per
slice and per volume. The weights are stored as fp16 and LZMA-coded; decoding is a numpy forward pass.
Integer weights (2–8 bits) may instead be coded with the adaptive rANS coder of `entropy` (coder "rans").
"""

from __future__ import annotations

import lzma
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import entropy
from ..archive import codec_keys, is_number, json_number
from ..errors import ArchiveError, InputError
from ..quantize import dequantize, fake_quantize, quantize
from ..volume import Volume4D
from . import EncodedSlice, JsonSettings

WEIGHT_DTYPE = np.dtype("<f2")
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
FINAL_ACTIVATIONS = ("identity", "relu")
PRECISIONS = ("auto", "fp32", "bf16")  # training arithmetic; the stored weights do not depend on it
LR_DECAYS = ("none", "cosine")
ACTIVATIONS = ("sine", "relu", "tanh", "sine-relu")  # SIREN, and the paper's MLP-ReLU, MLP-Tanh, MLP-SIREN
CODERS = ("lzma", "rans")  # entropy coder of the weights; rans for integer weights only
MAX_LAYERS = 64
MAX_UNITS = 1 << 14  # units per layer, and q-space basis vectors
# A member of B bytes may declare a network of at most PARAMS_FLOOR + PARAMS_PER_BYTE·B parameters (trained
# networks code to 0.1–1.7 bytes a parameter: docs/FORMAT.md, "Decode budget").
PARAMS_FLOOR = 1 << 16
PARAMS_PER_BYTE = 64
SHARED_MEMBER = False
EXACT = False

Progress = Callable[[dict], None]


@dataclass
class Config(JsonSettings):
    layers: int = 3
    units: int = 256
    epochs: int = 2000
    lr: float = 3e-4
    lr_decay: str = "none"
    activation: str = "sine"
    w0: float = 30.0
    final_activation: str = "identity"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    weight_bits: int = 16
    qat_epochs: int = 0
    basis: int = 0
    coder: str = "lzma"
    batch_slices: int = 0  # slices trained together; 0: automatic (see batch_size)
    target_psnr: float = 0.0  # > 0: each slice stops training once its stored weights reach this PSNR (dB)
    check_every: int = 10

    def __post_init__(self) -> None:
        for name in ("layers", "units", "epochs", "check_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1")
        if self.layers > MAX_LAYERS or self.units > MAX_UNITS or self.basis > MAX_UNITS:
            raise InputError(f"layers must be at most {MAX_LAYERS}, units and basis at most {MAX_UNITS}")
        if self.batch_slices < 0:
            raise InputError("batch slices must be 0 (automatic) or more")
        if self.weight_bits != 16 and not 2 <= self.weight_bits <= 8:
            raise InputError("weight bits must be 16 (fp16) or 2 to 8 (integers)")
        if self.qat_epochs < 0:
            raise InputError("qat epochs must be 0 or more")
        if self.basis < 0:
            raise InputError("basis must be 0 (full output) or the number of q-space basis vectors")
        if not (0 < self.lr < math.inf and 0 < self.w0 < math.inf):
            raise InputError("lr and w0 must be positive and finite")
        if self.final_activation not in FINAL_ACTIVATIONS:
            raise InputError(f"final activation must be one of {', '.join(FINAL_ACTIVATIONS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError("device must be auto, cpu or cuda")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        if self.lr_decay not in LR_DECAYS:
            raise InputError(f"lr decay must be one of {', '.join(LR_DECAYS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.coder not in CODERS:
            raise InputError(f"coder must be one of {', '.join(CODERS)}")
        if self.coder == "rans" and self.weight_bits == 16:
            raise InputError("the rans coder codes integer weights: use weight bits 2-8, or the lzma coder")


# Named settings. "paper" (= Config()): Mancini, Jones & Palombo's network and training, fp16 weights.
# "compact": 8-bit weights with quantisation-aware fine-tuning, a low-rank q-space output (24 basis vectors)
# and a cosine learning-rate decay: 3-4× the compression ratio of "paper" at the same PSNR on real dMRI.
PRESETS = {
    "paper": Config(),
    "compact": Config(weight_bits=8, qat_epochs=300, basis=24, lr=1e-3, lr_decay="cosine", coder="rans"),
}
DEFAULT_PRESET = "compact"  # the best rate-distortion measured (docs/BENCHMARKS.md)


def default_config() -> Config:
    """The settings used when none are given: the DEFAULT_PRESET."""
    return PRESETS[DEFAULT_PRESET]


def layer_activations(activation: str, layers: int) -> list[str]:
    """The activation of each hidden layer: all sine, all relu or tanh, or sine then relu ("sine-relu")."""
    if activation == "sine-relu":
        return ["sine"] + ["relu"] * (layers - 1)
    return [activation] * layers


def layer_shapes(config: Config, n_out: int, n_in: int = 2) -> list[tuple[int, int]]:
    """(out, in) of each linear map, in evaluation order; `n_in` inputs ((x, y) here). The first
    `config.layers` are sine layers, the rest linear: the head, and with a q-space basis K the basis map."""
    widths = [n_in] + [config.units] * config.layers
    sine = list(zip(widths[1:], widths[:-1]))
    if config.basis:
        return sine + [(config.basis, config.units), (n_out, config.basis)]
    return sine + [(n_out, config.units)]


def placeholders(volume: Volume4D, config: Config) -> list[EncodedSlice]:
    """The slice entries `encode` makes, with empty members (for rate control)."""
    data = volume.data
    entries = [slice_entry(data[:, :, z]) for z in range(data.shape[2])]
    for item in entries:
        item.member = b"" if item.entry["kind"] == "network" else None
    return entries


def slice_entry(values: np.ndarray) -> EncodedSlice:
    """The manifest entry of one slice (x, y, volumes) before training: constant, or network with its
    per-volume normalisation (exactly as it reads back from the manifest)."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if np.ptp(flat) == 0:
        return EncodedSlice({"kind": "constant", "value": json_number(flat[0, 0], values.dtype)})
    return EncodedSlice({"kind": "network", "min": _json_numbers(flat.min(axis=0), values.dtype).tolist(),
                         "max": _json_numbers(flat.max(axis=0), values.dtype).tolist()})


def grid(*sizes: int) -> np.ndarray:
    """Pixel coordinates in [−1, 1] (both ends included), (prod(sizes), len(sizes)), first axis slowest."""
    axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in sizes], indexing="ij")
    return np.stack([a.ravel() for a in axes], axis=1).astype(np.float32)


def encode(volume: Volume4D, config: Config, progress: Progress | None = None) -> list[EncodedSlice]:
    """Train one network per axial slice of the volume's data (x, y, z, volumes), `batch_size` slices at a
    time."""
    from ..nets import pick_device, use_bf16

    data = volume.data
    device = pick_device(config.device)
    bf16 = use_bf16(config.precision, device)
    nx, ny, nz, nv = data.shape
    span = volume_span(data)
    encoded = [slice_entry(data[:, :, z]) for z in range(nz)]
    to_train = [z for z in range(nz) if encoded[z].entry["kind"] == "network"]  # the others are constant
    size = batch_size(config, device, nx * ny, len(to_train))
    batches = [to_train[i:i + size] for i in range(0, len(to_train), size)]
    epochs = config.epochs + config.qat_epochs
    clock = Clock(len(batches) * epochs)
    emit = progress or (lambda event: None)
    emit({"event": "start", "slices": nz, "networks": len(to_train), "epochs": epochs, "batch_size": size,
          "device": str(device) + (" (bf16)" if bf16 else "")})
    for z in range(nz):
        if z not in to_train:
            emit({"event": "slice", "slice": z, "slices": nz, "kind": "constant", "bytes": 0})
    for b, batch in enumerate(batches):
        def report(epoch: int, loss: float, psnr: float, batch: list[int] = batch, before: int = b * epochs) -> None:
            clock.update(before + epoch)
            emit({"event": "epoch", "slice": batch[0], "batch_size": len(batch), "slices": nz, "epoch": epoch,
                  "epochs": epochs, "loss": loss, "psnr": psnr, "eta_s": clock.eta()})

        values = [data[:, :, z].reshape(nx * ny, nv) for z in batch]
        fitted = fit_networks(grid(nx, ny), values, [encoded[z].entry for z in batch], span, config,
                              [config.seed + z for z in batch], report)
        for z, (member, _) in zip(batch, fitted):
            encoded[z].member = member
            emit({"event": "slice", "slice": z, "slices": nz, "kind": "network", "bytes": len(member)})
    return encoded


def batch_size(config: Config, device, pixels: int, networks: int) -> int:
    """Slices trained together: config.batch_slices, or (0, automatic) 4 on a CPU and on a GPU as many as
    take about a quarter of its free memory for activations."""
    if config.batch_slices:
        return max(1, min(config.batch_slices, networks))
    if device.type != "cuda":
        return max(1, min(4, networks))
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    per_slice = pixels * config.units * (config.layers + 1) * 4 * 6  # fp32 activations, forward + backward
    return max(1, min(networks, int(free / 4 // per_slice)))


def encode_slice(values: np.ndarray, span: float, config: Config, seed: int) -> tuple[EncodedSlice, float]:
    """Train the network of one non-constant slice (x, y, volumes) whose volume spans `span` (max − min):
    its manifest entry and member, and the PSNR of the stored weights in the volume's [0, 1] scaling."""
    nx, ny, nv = values.shape
    item = slice_entry(values)
    [(item.member, psnr)] = fit_networks(grid(nx, ny), [values.reshape(nx * ny, nv)], [item.entry], span, config,
                                         [seed])
    return item, psnr


def fit_networks(coords: np.ndarray, values: list[np.ndarray], entries: list[dict], span: float, config: Config,
                 seeds: list[int], report=None) -> list[tuple[bytes, float]]:
    """Train networks (together) from `coords` (N, inputs) to each of `values` (N, volumes), each volume
    min–max normalised with its entry's "min" and "max", network s initialised with seeds[s]: the packed
    weights of each and the PSNR of its stored weights, errors scored in the volume's [0, 1] scaling
    (`span` = max − min of the whole volume)."""
    import torch

    from ..nets import Siren, pick_device, use_bf16
    from ..train import fit

    device = pick_device(config.device)
    targets, weights, models = [], [], []
    for v, entry, seed in zip(values, entries, seeds):
        vmin, vmax = np.array(entry["min"]), np.array(entry["max"])
        targets.append((v.astype(np.float64) - vmin) / np.where(vmax > vmin, vmax - vmin, 1.0))
        weights.append(((vmax - vmin) / span) ** 2)
        torch.manual_seed(seed)
        model = Siren(coords.shape[1], v.shape[1], config.layers, config.units, config.w0, config.final_activation,
                      config.basis, config.activation)
        if config.basis:
            model.set_basis(torch.as_tensor(targets[-1], dtype=torch.float32))
        models.append(model)
    fitted = fit(models, coords, np.stack(targets), np.stack(weights), config.epochs, config.lr, config.check_every,
                 _store(config.weight_bits), device, report, use_bf16(config.precision, device), config.qat_epochs,
                 config.target_psnr, config.lr_decay == "cosine")
    names = [name for name, _ in models[0].named_parameters()]
    return [(pack_weights([best[name] for name in names], config.weight_bits, config.coder),
             -10.0 * np.log10(max(score, 1e-30))) for best, score in fitted]


def volume_span(data: np.ndarray) -> float:
    """max − min of the whole volume (1 when constant): the scale in which errors are scored."""
    span = float(data.max()) - float(data.min())
    return span if span > 0 else 1.0


def check_slices(config: Config, manifest: dict) -> int:
    """`ArchiveError` unless every entry is a valid constant or network entry whose member can hold the
    network; the work of the forward passes."""
    nx, ny, _, nv = manifest["shape"]
    shapes = layer_shapes(config, nv)
    return sum(nx * ny * network_params(shapes, entry) for entry in manifest["slices"]
               if check_entry(entry, nv) == "network")


def check_entry(entry: dict, n_volumes: int) -> str:
    """The kind ("constant" or "network") of a valid slice entry; else `ArchiveError`."""
    z, kind, own = entry["index"], entry["kind"], codec_keys(entry)
    if kind == "constant":
        if own != {"value"} or not is_number(entry["value"]) or entry["member"] is not None:
            raise ArchiveError(f"slice {z}: a constant entry needs a finite value and no member")
    elif kind == "network":
        if own != {"min", "max"} or entry["member"] is None:
            raise ArchiveError(f"slice {z}: a network entry needs min, max and a member")
        if not all(isinstance(entry[k], list) and len(entry[k]) == n_volumes and all(map(is_number, entry[k]))
                   for k in ("min", "max")):
            raise ArchiveError(f"slice {z}: the network's normalisation must list {n_volumes} values (min, max)")
    else:
        raise ArchiveError(f"slice {z}: unknown kind {kind!r}")
    return kind


def network_params(shapes: list[tuple[int, int]], entry: dict) -> int:
    """The number of weights of a network of `shapes` (out, in), whose biases are stored too; `ArchiveError`
    unless the entry's member can hold it (the decode budget)."""
    weights = sum(out * inp for out, inp in shapes)
    if weights + sum(out for out, _ in shapes) > PARAMS_FLOOR + PARAMS_PER_BYTE * entry["bytes"]:
        raise ArchiveError(f"slice {entry['index']}: the settings declare a network of {weights:,} weights, "
                           f"more than its {entry['bytes']:,}-byte member can hold")
    return weights


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    """The float64 slice (x, y, volumes) described by a manifest entry and its member."""
    nx, ny, _, nv = shape
    if entry.get("kind") == "constant":
        return np.full((nx, ny, nv), float(entry["value"]))
    return decode_network(config, entry, member, grid(nx, ny), nv).reshape(nx, ny, nv)


def decode_network(config: Config, entry: dict, member: bytes | None, coords: np.ndarray,
                   n_volumes: int) -> np.ndarray:
    """The float64 values (N, n_volumes) of the network in `member` at `coords` (N, inputs), undoing the
    entry's per-volume normalisation."""
    if entry.get("kind") != "network" or member is None:
        raise ArchiveError(f"slice entry of unknown kind {entry.get('kind')!r}")
    vmin, vmax = (np.asarray(entry[k], dtype=np.float64) for k in ("min", "max"))
    if vmin.shape != (n_volumes,) or vmax.shape != (n_volumes,):
        raise ArchiveError(f"slice normalisation must list {n_volumes} values")
    shapes = layer_shapes(config, n_volumes, coords.shape[1])
    arrays = _unpacked(member, tuple(shapes), config.weight_bits, config.coder)
    out = forward(arrays, coords, config.w0, config.final_activation,
                  layer_activations(config.activation, config.layers))
    scale = np.where(vmax > vmin, vmax - vmin, 1.0)
    return out.astype(np.float64) * scale + vmin


def forward(arrays: list[np.ndarray], coords: np.ndarray, w0: float, final_activation: str,
            hidden: list[str], chunk: int = 65536) -> np.ndarray:
    """Numpy forward pass in float32 over (N, 2) coordinates, `chunk` rows at a time: the first
    len(hidden) (W, b) pairs are hidden layers with those activations, the others linear."""
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
    """Inverse of `pack_weights` (dequantized float32 arrays for bits < 16); every length is checked."""
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


@lru_cache(maxsize=2)
def _unpacked(member: bytes, shapes: tuple[tuple[int, int], ...], bits: int, coder: str) -> list[np.ndarray]:
    """`unpack_weights`, remembered: every slice of a siren3d archive shares one member."""
    return unpack_weights(member, list(shapes), bits, coder)


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


def _store(bits: int):
    """The parameters as the archive stores them (straight-through gradient), for training and checks."""
    def store(params: dict) -> dict:
        return {name: fake_quantize(p, bits) if bits < 16 and p.ndim == 2 else p + (p.half().float() - p).detach()
                for name, p in params.items()}
    return store


class Clock:
    """Estimates the time left from the epochs done so far."""

    def __init__(self, total_epochs: int) -> None:
        self.total, self.done, self.start = total_epochs, 0, time.monotonic()

    def update(self, done_epochs: int) -> None:
        self.done = done_epochs

    def eta(self) -> float:
        if self.done == 0:
            return float("nan")
        return (time.monotonic() - self.start) / self.done * (self.total - self.done)


def _json_numbers(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values exactly as they read back from the manifest."""
    return np.array([json_number(v, dtype) for v in values], dtype=np.float64)
