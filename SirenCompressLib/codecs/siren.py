"""Codec "siren": one sine-activation network per axial slice, (x, y) → all V measurements of the voxel.

Paper-faithful defaults (Mancini, Jones, Palombo): 3 sine layers × 256 units and a linear output layer,
w0 = 30, SIREN initialisation, Adam lr 3e-4, 2000 full-batch epochs, MSE on data min–max normalised per
slice and per volume. The weights are stored as fp16 and LZMA-coded; decoding is a numpy forward pass.
Integer weights (2–8 bits) may instead be coded with the adaptive rANS coder of `entropy` (coder "rans").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ..archive import codec_keys, is_number, json_number
from ..errors import ArchiveError, InputError
from ..network import forward, grid, layer_activations, pack_weights, unpack_weights
from ..progress import Clock
from ..quantize import fake_quantize
from ..volume import Volume4D
from . import EncodedSlice, JsonSettings, setting

FINAL_ACTIVATIONS = ("identity", "relu")
PRECISIONS = ("auto", "fp32", "bf16")  # training arithmetic; the stored weights do not depend on it
LR_DECAYS = ("none", "cosine")
ACTIVATIONS = ("sine", "relu", "tanh", "sine-relu")  # SIREN, and the paper's MLP-ReLU, MLP-Tanh, MLP-SIREN
DEVICES = ("auto", "cpu", "cuda")
CODERS = ("lzma", "rans")  # entropy coder of the weights; rans for integer weights only
MAX_LAYERS = 64
MAX_UNITS = 1 << 14  # units per layer, and q-space basis vectors
# A member of B bytes may declare a network of at most PARAMS_FLOOR + PARAMS_PER_BYTE·B parameters (trained
# networks code to 0.1–1.7 bytes a parameter: docs/FORMAT.md, "Decode budget").
PARAMS_FLOOR = 1 << 16
PARAMS_PER_BYTE = 64
NAME = "siren"
MEMBERS = "slice"
EXACT = False
RATE_CONTROL = frozenset({"ratio", "psnr"})

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class Config(JsonSettings):
    """Settings of the siren codec (`Config()`: the paper's; siren3d's derive from them)."""

    layers: int = setting(3, "--layers", "sine layers", min=1, max=MAX_LAYERS)
    units: int = setting(256, "--units", "units per layer", min=1, max=MAX_UNITS)
    epochs: int = setting(2000, "--epochs", "training epochs per slice", min=1)
    lr: float = setting(3e-4, "--lr", "Adam learning rate", above=0)
    lr_decay: str = setting("none", "--lr-decay", "none, or cosine decay to zero over the epochs", choices=LR_DECAYS)
    activation: str = setting("sine", "--activation", "hidden layers: sine (SIREN), or the paper's baselines relu, "
                              "tanh, sine-relu", choices=ACTIVATIONS)
    w0: float = setting(30.0, "--w0", "sine frequency w0", above=0)
    final_activation: str = setting("identity", "--final-activation", "after the output layer",
                                    choices=FINAL_ACTIVATIONS)
    seed: int = setting(0, "--seed", "random seed")
    device: str = setting("auto", "--device", "auto takes a CUDA GPU when there is one", choices=DEVICES)
    precision: str = setting("fp32", "--precision", "training arithmetic: fp32, bf16 autocast (faster on CPUs "
                             "with AVX-512 BF16 and recent GPUs, a little less accurate per epoch), or auto",
                             choices=PRECISIONS)
    weight_bits: int = setting(16, "--weight-bits", "16: fp16 weights; 2-8: per-channel integer weights",
                               min=2, max=16)
    qat_epochs: int = setting(0, "--qat-epochs", "extra epochs of quantisation-aware fine-tuning", min=0)
    basis: int = setting(0, "--basis", "0: the network outputs all volumes; K > 0: K coefficients of a per-slice "
                         "q-space basis (PCA-initialised, trained with the network)", min=0, max=MAX_UNITS)
    coder: str = setting("lzma", "--coder", "entropy coder of the weights: lzma, or rans (adaptive; integer "
                         "weights only)", choices=CODERS)
    batch_slices: int = setting(0, "--batch-slices", "slices trained together (vmap over stacked networks); 0: "
                                "automatic, 4 on a CPU, as many as fit in a quarter of the GPU's free memory",
                                min=0)
    target_psnr: float = 0.0  # > 0: each slice stops training once its stored weights reach this PSNR (dB)
    check_every: int = field(default=10, metadata={"min": 1})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_bits != 16 and not 2 <= self.weight_bits <= 8:
            raise InputError("weight bits must be 16 (fp16) or 2 to 8 (integers)")
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
    """The settings used when none are given: the DEFAULT_PRESET.

    Returns
    -------
    Config
    """
    return PRESETS[DEFAULT_PRESET]


def configure(base: Config, given: dict) -> Config:
    """`base` with `given` on top; fp16 weights (weight_bits 16) bring the lzma coder unless a coder is given.

    Parameters
    ----------
    base : Config
    given : dict
        Config field name → value.

    Returns
    -------
    Config
    """
    if given.get("weight_bits") == 16:
        given = {"coder": "lzma", **given}
    return replace(base, **given)


def preferred(has_gradients: bool, volumes: int, diffusion_like: bool) -> bool:
    """Never suggested over the default (this codec is `DEFAULT`).

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


def member_bytes(volume: Volume4D, config: Config, n_in: int = 2) -> Callable[[int], int]:
    """Rate control's hook for a ratio target.

    Measured on a freshly initialised network, whose weights code to nearly the size of trained ones.

    Parameters
    ----------
    volume : Volume4D
    config : Config
    n_in : int
        The network's inputs: 2, (x, y).

    Returns
    -------
    callable
        Units per layer → bytes of one network's member.
    """
    import torch

    from ..nets import Siren

    def size(units: int) -> int:
        torch.manual_seed(config.seed)
        model = Siren(n_in, volume.shape[3], config.layers, units, config.w0, config.final_activation, config.basis,
                      config.activation)
        return len(pack_weights([p.detach().numpy() for p in model.parameters()], config.weight_bits, config.coder))

    return size


def psnr_probe(volume: Volume4D, config: Config) -> Callable[[Config], tuple[float, int]] | None:
    """Rate control's hook for a PSNR target, trained on the probe slice (the middle one of those that need a
    network).

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    callable or None
        Trial settings → (PSNR in dB, member bytes); None for a constant volume.
    """
    data = volume.data
    slices = [z for z in range(data.shape[2]) if np.ptp(data[:, :, z]) > 0]
    if not slices:
        return None
    z = slices[len(slices) // 2]
    span = volume_span(data)

    def probe(trial: Config) -> tuple[float, int]:
        item, reached = encode_slice(data[:, :, z], span, trial, config.seed + z)
        return reached, len(item.member)

    return probe


def layer_shapes(config: Config, n_out: int, n_in: int = 2) -> list[tuple[int, int]]:
    """The shape of each linear map, in evaluation order.

    The first `config.layers` are sine layers, the rest linear: the head, and with a q-space basis K the
    basis map.

    Parameters
    ----------
    config : Config
    n_out : int
        The outputs: the number of volumes.
    n_in : int
        The inputs: 2, (x, y).

    Returns
    -------
    list of (out, in)
    """
    widths = [n_in] + [config.units] * config.layers
    sine = list(zip(widths[1:], widths[:-1]))
    if config.basis:
        return sine + [(config.basis, config.units), (n_out, config.basis)]
    return sine + [(n_out, config.units)]


def placeholders(volume: Volume4D, config: Config) -> list[EncodedSlice]:
    """The slice entries `encode` makes, with empty members (for rate control).

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    list of EncodedSlice
    """
    data = volume.data
    entries = [slice_entry(data[:, :, z]) for z in range(data.shape[2])]
    for item in entries:
        item.member = b"" if item.entry["kind"] == "network" else None
    return entries


def slice_entry(values: np.ndarray) -> EncodedSlice:
    """The manifest entry of one slice before training: constant, or network with its per-volume
    normalisation (exactly as it reads back from the manifest).

    Parameters
    ----------
    values : ndarray, shape (x, y, volumes)

    Returns
    -------
    EncodedSlice
    """
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if np.ptp(flat) == 0:
        return EncodedSlice({"kind": "constant", "value": json_number(flat[0, 0], values.dtype)})
    return EncodedSlice({"kind": "network", "min": _json_numbers(flat.min(axis=0), values.dtype).tolist(),
                         "max": _json_numbers(flat.max(axis=0), values.dtype).tolist()})


def encode(volume: Volume4D, config: Config, progress: Progress | None = None) -> list[EncodedSlice]:
    """Train one network per axial slice, `batch_size` slices at a time (imports torch).

    The network is a SIREN (Sitzmann et al., "Implicit neural representations with periodic activation
    functions", NeurIPS 2020) as the dMRI compression paper of Mancini, Jones and Palombo uses it.

    Parameters
    ----------
    volume : Volume4D
        The data, (x, y, z, volumes).
    config : Config
    progress : callable or None
        Receives progress events (dicts).

    Returns
    -------
    list of EncodedSlice
        One per axial slice.
    """
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
    take about a quarter of its free memory for activations.

    Parameters
    ----------
    config : Config
    device : torch.device
    pixels : int
        Pixels per slice.
    networks : int
        Slices to train.

    Returns
    -------
    int
    """
    if config.batch_slices:
        return max(1, min(config.batch_slices, networks))
    if device.type != "cuda":
        return max(1, min(4, networks))
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    per_slice = pixels * config.units * (config.layers + 1) * 4 * 6  # fp32 activations, forward + backward
    return max(1, min(networks, int(free / 4 // per_slice)))


def encode_slice(values: np.ndarray, span: float, config: Config, seed: int) -> tuple[EncodedSlice, float]:
    """Train the network of one non-constant slice.

    Parameters
    ----------
    values : ndarray, shape (x, y, volumes)
    span : float
        max − min of the whole volume.
    config : Config
    seed : int

    Returns
    -------
    EncodedSlice
        Its manifest entry and member.
    float
        The PSNR (dB) of the stored weights in the volume's [0, 1] scaling.
    """
    nx, ny, nv = values.shape
    item = slice_entry(values)
    [(item.member, psnr)] = fit_networks(grid(nx, ny), [values.reshape(nx * ny, nv)], [item.entry], span, config,
                                         [seed])
    return item, psnr


def fit_networks(coords: np.ndarray, values: list[np.ndarray], entries: list[dict], span: float, config: Config,
                 seeds: list[int], report=None) -> list[tuple[bytes, float]]:
    """Train networks together, one per target, each volume min–max normalised with its entry's "min" and
    "max"; errors are scored in the volume's [0, 1] scaling.

    Parameters
    ----------
    coords : ndarray, shape (N, inputs)
    values : list of ndarray, shape (N, volumes)
        The targets.
    entries : list of dict
        Their manifest entries.
    span : float
        max − min of the whole volume.
    config : Config
    seeds : list of int
        Network s is initialised with seeds[s].
    report : callable or None
        Called as report(epoch, loss, psnr).

    Returns
    -------
    list of (bytes, float)
        Each network's packed weights and the PSNR (dB) of its stored weights.
    """
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
    """max − min of the whole volume (1 when constant): the scale in which errors are scored.

    Parameters
    ----------
    data : ndarray

    Returns
    -------
    float
    """
    span = float(data.max()) - float(data.min())
    return span if span > 0 else 1.0


def check_slices(config: Config, manifest: dict) -> int:
    """Check every slice entry: a valid constant or network entry whose member can hold the network.

    Parameters
    ----------
    config : Config
    manifest : dict

    Returns
    -------
    int
        The work of the forward passes (multiply-adds).

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
    nx, ny, _, nv = manifest["shape"]
    shapes = layer_shapes(config, nv)
    return sum(nx * ny * network_params(shapes, entry) for entry in manifest["slices"]
               if check_entry(entry, nv) == "network")


def check_entry(entry: dict, n_volumes: int) -> str:
    """The kind of a valid slice entry.

    Parameters
    ----------
    entry : dict
    n_volumes : int

    Returns
    -------
    str
        "constant" or "network".

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
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
    """The number of weights of a network, its biases included.

    Parameters
    ----------
    shapes : list of (out, in)
    entry : dict
        The slice entry whose member holds it.

    Returns
    -------
    int

    Raises
    ------
    ArchiveError
        Unless the entry's member can hold it (the decode budget).
    """
    weights = sum(out * inp for out, inp in shapes)
    if weights + sum(out for out, _ in shapes) > PARAMS_FLOOR + PARAMS_PER_BYTE * entry["bytes"]:
        raise ArchiveError(f"slice {entry['index']}: the settings declare a network of {weights:,} weights, "
                           f"more than its {entry['bytes']:,}-byte member can hold")
    return weights


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    """Decode one slice from its manifest entry and member (numpy only).

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
        float64.
    """
    nx, ny, _, nv = shape
    if entry.get("kind") == "constant":
        return np.full((nx, ny, nv), float(entry["value"]))
    return decode_network(config, entry, member, grid(nx, ny), nv).reshape(nx, ny, nv)


def decode_network(config: Config, entry: dict, member: bytes | None, coords: np.ndarray,
                   n_volumes: int) -> np.ndarray:
    """Evaluate the network in `member`, undoing the entry's per-volume normalisation.

    Parameters
    ----------
    config : Config
    entry : dict
    member : bytes or None
    coords : ndarray, shape (N, inputs)
    n_volumes : int

    Returns
    -------
    ndarray, shape (N, n_volumes)
        float64.
    """
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


@lru_cache(maxsize=2)
def _unpacked(member: bytes, shapes: tuple[tuple[int, int], ...], bits: int, coder: str) -> list[np.ndarray]:
    """`unpack_weights`, remembered: every slice of a siren3d archive shares one member."""
    return unpack_weights(member, list(shapes), bits, coder)


def _store(bits: int):
    """The parameters as the archive stores them (straight-through gradient), for training and checks."""
    def store(params: dict) -> dict:
        return {name: fake_quantize(p, bits) if bits < 16 and p.ndim == 2 else p + (p.half().float() - p).detach()
                for name, p in params.items()}
    return store


def _json_numbers(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values exactly as they read back from the manifest."""
    return np.array([json_number(v, dtype) for v in values], dtype=np.float64)
