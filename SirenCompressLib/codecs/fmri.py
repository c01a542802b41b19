"""Codec "fmri": a coordinate-to-time-series network with ICA-initialised activation patterns, after Li et
al., "A Compact Implicit Neural Representation for Efficient Storage of Massive 4D fMRI".

The whole run is one model (stored with the first slice; the other slices share it):

- the mask of voxels with temporal signal (`signal_mask`: temporal variance above the noise, estimated
  per voxel from successive differences, grown by a voxel), coded losslessly as a 0/1 image; outside it
  a voxel is decoded as its mean (any data: zero-mean, negative, constant);
- the mean frame, quantised with a step of `mean_step` × the median temporal standard deviation in the
  mask and coded losslessly (the lossless codec's predictors and coder, slices as its "volumes");
- in the mask, the time series minus their exact mean (so that the mean frame's step changes nothing but
  the mean frame: rate control coarsens it without retraining), in units of their standard deviation, as
  fusion(Σ_k w_k(x, y, z) · c_k(t)): K temporal activation patterns c_k (a learnable K × T matrix
  initialised by spatial FastICA of the masked data), spatial weight maps w_k from a SIREN of the voxel
  coordinates (pre-trained on the ICA maps) with a learnt soft threshold per map (small weights become
  0: less of a pattern leaks where it is absent), and a small fusion network: a residual two-layer 1D
  convolution over time;
- loss L2 + σ·(1 − SSIM of the frames' axial slices); the last `qat_epochs` train through 8-bit
  quantisation; SIREN weights, patterns and fusion weights are quantised per row and rANS-coded.

Decoding needs numpy alone. Member layout: docs/FORMAT.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..archive import codec_keys, is_int, is_number
from ..errors import ArchiveError, InputError
from ..network import forward, grid, pack_weights, unpack_weights
from ..progress import Clock
from ..volume import Volume4D
from . import EncodedSlice, JsonSettings, lossless, setting
from .siren import DEVICES, MAX_LAYERS, MAX_UNITS, network_params

HEADER = np.dtype("<u4")
MEAN_CODER = lossless.Config(qspace="off", order="file", least_lanes=1)  # as fmri archives have always coded it
THRESHOLD_START = 0.1  # soft threshold on the spatial maps (unit variance at the start), learnt
SSIM_FRAMES = 16  # frames whose SSIM enters each training step's loss
MAX_COMPONENTS = 1 << 12
MAX_FUSION = 1 << 10  # fusion channels and kernel width
ENTRY_KEYS = {"mean_step", "scale", "frames", "components", "constant_voxels"}
ENTRY_KEYS_0_3 = {"mean_step", "threshold", "scale", "frames", "components"}  # the mask: mean frame > threshold
NAME = "fmri"
MEMBERS = "volume"
EXACT = False
RATE_CONTROL = frozenset({"ratio", "psnr"})
COARSER = "mean_step"  # rate control raises it when even the smallest network adds less error than asked for
PRESETS: dict = {}
DEFAULT_PRESET = None
MIN_FRAMES = 50  # time series this long, without gradients, are suggested this codec


@dataclass(frozen=True)
class Config(JsonSettings):
    """Settings of the fmri codec."""

    components: int = setting(20, "--components", "temporal activation patterns K", min=1, max=MAX_COMPONENTS)
    layers: int = setting(3, "--layers", "sine layers of the spatial maps' SIREN", min=1, max=MAX_LAYERS)
    units: int = setting(128, "--units", "units per layer", min=1, max=MAX_UNITS)
    w0: float = setting(30.0, "--w0", "sine frequency w0", above=0)
    epochs: int = setting(1500, "--epochs", "training epochs", min=1)
    lr: float = setting(1e-3, "--lr", "Adam learning rate", above=0)
    ssim_weight: float = setting(0.1, "--ssim-weight", "σ in the loss L2 + σ·(1 − SSIM)", min=0)
    fusion_channels: int = setting(8, "--fusion-channels", "channels of the temporal fusion convolution", min=1,
                                   max=MAX_FUSION)
    fusion_kernel: int = setting(5, "--fusion-kernel", "its width in frames, odd", min=1, max=MAX_FUSION)
    mean_step: float = setting(0.25, "--mean-step", "the mean frame's quantisation step × the median temporal std "
                               "in the mask", above=0)
    mask_z: float = setting(4.0, "--mask-z", "model the voxels whose temporal variance exceeds (1 + Z/√frames) × "
                            "their noise variance, and their neighbours; the others decode as their mean", min=0)
    weight_bits: int = setting(8, "--weight-bits", "integer weights of 2-8 bits", min=2, max=8)
    qat_epochs: int = setting(200, "--qat-epochs", "extra epochs of quantisation-aware fine-tuning", min=0)
    seed: int = setting(0, "--seed", "random seed")
    device: str = setting("auto", "--device", "auto takes a CUDA GPU when there is one", choices=DEVICES)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fusion_kernel % 2 == 0:
            raise InputError("the fusion kernel must be odd")

    @classmethod
    def from_json(cls, d: dict) -> Config:
        """The settings as stored; version 0.3's `mask_fraction` is dropped (its entries store the mask's threshold).

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
        return super().from_json({k: v for k, v in d.items() if k != "mask_fraction"})


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
    """Whether the input is a time series: MIN_FRAMES or more volumes, no gradients, nothing hinting at diffusion
    data.

    Parameters
    ----------
    has_gradients : bool
    volumes : int
    diffusion_like : bool

    Returns
    -------
    bool
    """
    return not has_gradients and not diffusion_like and volumes >= MIN_FRAMES


def placeholders(volume: Volume4D, config: Config) -> list[EncodedSlice]:
    """The entries `encode` makes, with numbers of typical length, and one (here empty) member with the first
    slice, shared by the others (for rate control).

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    list of EncodedSlice
    """
    nz, nt = volume.shape[2], volume.shape[3]
    entry = {"kind": "fmri", "mean_step": 1.2345678901234567, "scale": 12.345678901234567, "frames": nt,
             "components": config.components, "constant_voxels": volume.shape[0] * volume.shape[1]}
    return [EncodedSlice(dict(entry), b"" if z == 0 else None, None if z == 0 else 0) for z in range(nz)]


def encode(volume: Volume4D, config: Config, progress=None) -> list[EncodedSlice]:
    """Fit the model to the whole run (imports torch).

    Parameters
    ----------
    volume : Volume4D
        The run, (x, y, z, time).
    config : Config
    progress : callable or None
        Receives progress events (dicts).

    Returns
    -------
    list of EncodedSlice
        One per axial slice; the model is the member of the first.
    """
    emit = progress or (lambda event: None)
    run = _prepare(volume, config)
    arrays, k = _fitted(run, config, emit)
    return _encoded(volume, run, arrays, k, config, emit)


def _fitted(run: _Run, config: Config, emit) -> tuple[list, int]:
    """The model's arrays and K (none where no voxel has a signal)."""
    if not run.mask.any():
        return [], 0
    return _fit(grid(*run.mask.shape)[run.mask.ravel()], run.dynamics, run.mask, config, emit)


def _encoded(volume: Volume4D, run: _Run, arrays: list, k: int, config: Config, emit) -> list[EncodedSlice]:
    nz = volume.shape[2]
    member = _member(run, arrays, config)
    emit({"event": "slice", "slice": 0, "slices": nz, "kind": "network", "bytes": len(member)})
    out = placeholders(volume, config)
    out[0].member = member
    for z, item in enumerate(out):
        item.entry = {**run.entry, "components": k, "constant_voxels": int((~run.mask[:, :, z]).sum())}
    return out


def member_bytes(volume: Volume4D, config: Config):
    """Rate control's hook for a ratio target, measured with untrained spatial networks (whose weights code to
    about the size of trained ones); the mean frame and the ICA patterns are the real ones.

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    callable
        Units per layer → the member's bytes.
    """
    import torch

    from ..nets import Siren

    run = _prepare(volume, config)
    k, patterns = 0, None
    if run.mask.any():
        _, patterns = fastica(run.dynamics, _components(config, run.dynamics), config.seed)
        k = patterns.shape[0]

    def size(units: int) -> int:
        if not k:
            return len(_member(run, [], config))
        torch.manual_seed(config.seed)
        sized = replace(config, units=units)
        model = _model_class()(Siren(3, k, sized.layers, units, sized.w0), patterns, sized)
        params = {n: p.detach().numpy() for n, p in model.named_parameters()}
        return len(_member(run, _stored_arrays(params, sized, k), sized))

    return size


def psnr_probe(volume: Volume4D, config: Config) -> Callable[[Config], tuple[float, int]] | None:
    """Rate control's hook for a PSNR target: each trial is a whole encode and decode (the model trains to its
    epochs; there is no early stop), scored on the voxels as decoded. Trials that differ only in `mean_step`
    share one trained model (the model does not depend on it: see `_prepare`).

    Parameters
    ----------
    volume : Volume4D
    config : Config

    Returns
    -------
    callable or None
        Trial settings → (PSNR in dB, the member's bytes); None for a constant volume.
    """
    from ..metrics import value_range
    from ..pipeline import decoded_psnr

    data = volume.data
    lo, hi = value_range(data)
    if hi == lo:
        return None

    models: dict = {}  # the trained models, by their settings other than mean_step

    def probe(trial: Config) -> tuple[float, int]:
        run = _prepare(volume, trial)
        key = replace(trial, mean_step=config.mean_step)
        if key not in models:
            models[key] = _fitted(run, trial, lambda event: None)
        encoded = _encoded(volume, run, *models[key], trial, lambda event: None)
        member = encoded[0].member
        return decoded_psnr(data, (decode_slice(trial, {"index": z, **item.entry}, member, data.shape)
                                   for z, item in enumerate(encoded))), len(member)

    return probe


@dataclass
class _Run:
    """What encoding settles before training: the coded mean frame and mask, the entry, the mask and the
    masked, normalised dynamics (N, T)."""

    mean_member: bytes
    mask_member: bytes
    entry: dict
    mask: np.ndarray
    dynamics: np.ndarray


def _prepare(volume: Volume4D, config: Config) -> _Run:
    data = volume.data.astype(np.float64)
    nx, ny, nz, nt = data.shape
    if nt < 3:
        raise InputError(f"the fmri codec needs a time series (3 or more volumes), not {nt}")
    mean = data.mean(axis=3)
    mask = signal_mask(data, config.mask_z)
    spread = data.std(axis=3)
    noise = float(np.median(spread[mask] if mask.any() else spread))
    step = config.mean_step * noise if noise > 0 else max(float(np.ptp(mean)), 1.0) * 1e-3
    mean_q = np.rint(mean / step).astype(np.int64)
    if np.abs(mean_q).max() >= 2**31:
        raise InputError("the mean frame's quantisation step is too small")
    mean_q = mean_q.astype(np.int32)
    mean_member, _ = lossless.encode_slice(mean_q, list(range(nz)), {}, MEAN_CODER)
    mask_member, _ = lossless.encode_slice(mask.astype(np.uint8), list(range(nz)), {}, MEAN_CODER)
    dynamics = (data - mean[..., None])[mask]  # (N, T), about the exact mean: the same for every mean_step
    scale = (float(dynamics.std()) if dynamics.size else 0.0) or 1.0  # 1 when nothing varies
    entry = {"kind": "fmri", "mean_step": step, "scale": scale, "frames": nt}
    return _Run(mean_member, mask_member, entry, mask, dynamics / scale)


def signal_mask(data: np.ndarray, z: float) -> np.ndarray:
    """The voxels of a run with temporal signal.

    Temporal variance above (1 + z/√T) × the noise variance σ² = mean((x_{t+1} − x_t)²)/2 of the voxel (for
    white noise the ratio is 1 ± 1/√T; slow signal raises the variance, hardly the differences), then grown
    by one voxel (3×3×3): weak signal beside detected signal is kept too. A constant voxel is in it only
    beside signal.

    Parameters
    ----------
    data : ndarray, shape (x, y, z, T)
    z : float
        The threshold's multiple of 1/√T.

    Returns
    -------
    ndarray of bool, shape (x, y, z)
    """
    nt = data.shape[3]
    noise = np.mean(np.diff(data, axis=3) ** 2, axis=3) / 2
    found = np.pad(data.var(axis=3) > (1 + z / math.sqrt(nt)) * noise, 1)
    nx, ny, nz = data.shape[:3]
    return np.any([found[i:i + nx, j:j + ny, k:k + nz] for i in range(3) for j in range(3) for k in range(3)],
                  axis=0)


def _member(run: _Run, arrays: list[np.ndarray], config: Config) -> bytes:
    weights = pack_weights(arrays, config.weight_bits, "rans") if arrays else b""
    parts = [run.mean_member, run.mask_member, weights]
    return np.array([len(p) for p in parts], dtype=HEADER).tobytes() + b"".join(parts)


def _components(config: Config, dynamics: np.ndarray) -> int:
    return min(config.components, dynamics.shape[0] - 1, dynamics.shape[1] - 1)


def check_slices(config: Config, manifest: dict) -> int:
    """Check the slice entries: every entry the same valid fmri entry (version 0.3's with the mask's
    threshold, or a stored mask's with each slice's `constant_voxels`), slice 0's member able to hold the
    model, and the mean frame's coding fitting.

    Parameters
    ----------
    config : Config
    manifest : dict

    Returns
    -------
    int
        The work of the mean frame, the mask and the model at every voxel.

    Raises
    ------
    ArchiveError
        For an invalid entry.
    """
    nx, ny, nz, nt = manifest["shape"]
    first = manifest["slices"][0]
    old = "threshold" in first
    keys = ENTRY_KEYS_0_3 if old else ENTRY_KEYS
    shared = keys - {"constant_voxels"}
    model = {k: first.get(k) for k in shared}
    for entry in manifest["slices"]:
        if not (entry["kind"] == "fmri" and codec_keys(entry) == keys and entry["member"] is not None
                and {k: entry[k] for k in shared} == model
                and (old or is_int(entry["constant_voxels"]) and 0 <= entry["constant_voxels"] <= nx * ny)):
            raise ArchiveError(f"slice {entry['index']}: every fmri entry must name the shared member and carry "
                               f"the same kind, {', '.join(sorted(shared))}" + ("" if old else
                                                                                 " and its constant_voxels"))
    k = model["components"]
    if not (is_number(model["mean_step"]) and model["mean_step"] > 0 and is_number(model["scale"])
            and (not old or is_int(model["threshold"]) and abs(model["threshold"]) < 2**31)
            and is_int(model["frames"]) and model["frames"] == nt and is_int(k) and 0 <= k <= config.components):
        raise ArchiveError("bad fmri entry: mean_step > 0, scale, frames = the volumes, 0 ≤ components ≤ the "
                           "settings' components" + (", an int32 threshold" if old else ""))
    work = lossless.decode_work(nx * ny, nz) * (1 if old else 2)
    if k:
        weights = network_params(_shapes(config, k, nt), first)
        work += nx * ny * nz * (weights + 2 * config.fusion_channels * config.fusion_kernel * nt)
    return work


def decode_slice(config: Config, entry: dict, member: bytes | None, shape: tuple) -> np.ndarray:
    """Decode the slice at the entry's index (numpy only).

    Parameters
    ----------
    config : Config
    entry : dict
    member : bytes or None
    shape : tuple of int
        The volume's shape (x, y, z, volumes).

    Returns
    -------
    ndarray, shape (x, y, time)
        float64.

    Raises
    ------
    ArchiveError
        For a corrupt member.
    """
    nx, ny, nz, nt = shape
    if entry.get("kind") != "fmri" or member is None:
        raise ArchiveError("an fmri slice needs the shared member")
    z, k = int(entry["index"]), int(entry["components"])
    if int(entry["frames"]) != nt:
        raise ArchiveError("the fmri entry's frame count does not match the shape")
    old = "threshold" in entry  # version 0.3: no stored mask, the mean frame above a threshold
    mean_q, mask, arrays = _unpacked(member, (nx, ny, nz, nt), k, config, 2 if old else 3)
    mean = mean_q[:, :, z].astype(np.float64) * float(entry["mean_step"])
    out = np.repeat(mean[..., None], nt, axis=2)
    mask = mean_q[:, :, z] > int(entry["threshold"]) if old else mask[:, :, z]
    if k and mask.any():
        coords = grid(nx, ny, nz).reshape(nx, ny, nz, 3)[:, :, z][mask]
        out[mask] += float(entry["scale"]) * _series(arrays, coords, config)
    return out


# --- the model ------------------------------------------------------------------------------------------


def fastica(data: np.ndarray, k: int, seed: int = 0, iterations: int = 200,
            tolerance: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Spatial ICA: PCA to k components, then symmetric FastICA (log-cosh contrast) over the voxels.

    FastICA: Hyvärinen, "Fast and robust fixed-point algorithms for independent component analysis",
    IEEE Trans. Neural Networks 10(3), 1999.

    Parameters
    ----------
    data : ndarray, shape (N, T)
        Voxels × time, zero-mean rows.
    k : int
        The number of components.
    seed : int
    iterations : int
        At most this many fixed-point iterations.
    tolerance : float
        Stop when 1 − |cos| between every unmixing vector and its update is below this.

    Returns
    -------
    maps : ndarray, shape (N, k)
        Of unit variance.
    patterns : ndarray, shape (k, T)
        With data ≈ maps @ patterns.
    """
    n = data.shape[0]
    u, sigma, vt = np.linalg.svd(data, full_matrices=False)
    k = min(k, int((sigma > sigma[0] * 1e-10).sum()) if sigma.size else 0)
    if k == 0:
        return np.zeros((n, 0)), np.zeros((0, data.shape[1]))
    white = u[:, :k] * math.sqrt(n)  # N × k, unit variance, uncorrelated
    unmix = _decorrelated(np.random.default_rng(seed).normal(size=(k, k)))
    for _ in range(iterations):
        g = np.tanh(white @ unmix.T)
        updated = _decorrelated(g.T @ white / n - (1 - g**2).mean(axis=0)[:, None] * unmix)
        converged = np.max(np.abs(np.abs(np.einsum("ij,ij->i", updated, unmix)) - 1)) < tolerance
        unmix = updated
        if converged:
            break
    maps = white @ unmix.T
    patterns = unmix @ (sigma[:k, None] * vt[:k]) / math.sqrt(n)
    return maps, patterns


def _decorrelated(w: np.ndarray) -> np.ndarray:
    """(W Wᵀ)^(−1/2) W: the nearest matrix with orthonormal rows."""
    values, vectors = np.linalg.eigh(w @ w.T)
    return vectors @ np.diag(1 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T @ w


def _fit(coords: np.ndarray, target: np.ndarray, mask: np.ndarray, config: Config, emit) -> tuple[list, int]:
    """Train the model on the normalised dynamics `target` (N, T) at `coords` (N, 3); the arrays to store
    (in `_shapes` order, with biases) and K."""
    import torch

    from ..nets import Siren, pick_device
    from ..quantize import fake_quantize

    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    maps0, patterns0 = fastica(target, _components(config, target), config.seed)
    k = patterns0.shape[0]
    if k == 0:
        return [], 0
    model = _model_class()(Siren(3, k, config.layers, config.units, config.w0), patterns0, config).to(device)
    x = torch.as_tensor(coords, dtype=torch.float32, device=device)
    y = torch.as_tensor(target, dtype=torch.float32, device=device)
    where = torch.as_tensor(np.flatnonzero(mask.ravel()), device=device)
    ssim = _Ssim(mask.shape, where, float(y.max() - y.min()) or 1.0, device)
    _pretrain(model.maps, x, torch.as_tensor(maps0, dtype=torch.float32, device=device), config)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    total = config.epochs + config.qat_epochs
    clock = Clock(total)
    emit({"event": "start", "slices": mask.shape[2], "networks": 1, "epochs": total, "device": str(device)})

    def stored(params: dict) -> dict:
        return {name: fake_quantize(p.reshape(p.shape[0], -1), config.weight_bits).reshape(p.shape)
                if p.dim() > 1 else p for name, p in params.items()}

    best, best_loss = None, math.inf
    for epoch in range(1, total + 1):
        quantised = epoch > config.epochs
        for group in optimiser.param_groups:
            group["lr"] = config.lr * (0.01 if quantised else 0.5 * (1 + math.cos(math.pi * epoch / config.epochs)))
        optimiser.zero_grad(set_to_none=True)
        params = dict(model.named_parameters())
        pred = torch.func.functional_call(model, stored(params) if quantised else params, (x,))
        frames = torch.randperm(y.shape[1], device=device)[:SSIM_FRAMES]  # SSIM on a sample of frames
        loss = torch.mean((pred - y) ** 2) + config.ssim_weight * (1 - ssim(pred, y, frames))
        loss.backward()
        optimiser.step()
        if epoch % 25 and epoch != total:
            continue
        with torch.no_grad():
            pred = torch.func.functional_call(model, stored(dict(model.named_parameters())), (x,))
            score = float(torch.mean((pred - y) ** 2) + config.ssim_weight * (1 - ssim(pred, y)))
        if score < best_loss:
            best_loss, best = score, {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
        clock.update(epoch)
        emit({"event": "epoch", "slice": 0, "slices": mask.shape[2], "epoch": epoch, "epochs": total,
              "loss": score, "psnr": -10 * math.log10(max(float(torch.mean((pred - y) ** 2)), 1e-30)),
              "eta_s": clock.eta()})
    if best is None:
        raise FloatingPointError("training diverged: the loss is not finite")
    return _stored_arrays(best, config, k), k


def _stored_arrays(params: dict[str, np.ndarray], config: Config, k: int) -> list[np.ndarray]:
    """The model's parameters (by name) as the (W, b) pairs `pack_weights` stores, in `_shapes` order."""
    siren = [a for name, a in params.items() if name.startswith("maps.")]  # registration order
    w1, w2 = params["widen.weight"], params["narrow.weight"]
    return [*siren, params["patterns"], params["thresholds"], w1.reshape(w1.shape[0], -1),
            params["widen.bias"], w2.reshape(1, -1), params["narrow.bias"]]


def _pretrain(maps, x, target, config: Config, epochs: int = 300) -> None:
    """Fit the SIREN to the ICA maps (the paper's pre-training)."""
    import torch

    optimiser = torch.optim.Adam(maps.parameters(), lr=config.lr)
    for _ in range(epochs):
        optimiser.zero_grad(set_to_none=True)
        torch.mean((maps(x) - target) ** 2).backward()
        optimiser.step()


def _model_class():
    import torch
    from torch import nn

    class Model(nn.Module):
        """fusion(maps(coords) @ patterns)."""

        def __init__(self, maps: nn.Module, patterns: np.ndarray, config: Config) -> None:
            super().__init__()
            self.maps = maps
            self.patterns = nn.Parameter(torch.as_tensor(patterns, dtype=torch.float32))
            self.thresholds = nn.Parameter(torch.full((patterns.shape[0],), THRESHOLD_START))
            width = config.fusion_kernel
            self.widen = nn.Conv1d(1, config.fusion_channels, width, padding=width // 2)
            self.narrow = nn.Conv1d(config.fusion_channels, 1, width, padding=width // 2)
            with torch.no_grad():  # the fusion starts as the identity
                self.narrow.weight.zero_()
                self.narrow.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            maps = self.maps(x)
            maps = torch.sign(maps) * torch.relu(maps.abs() - self.thresholds.abs())  # small weights to 0
            series = maps @ self.patterns
            return series + self.narrow(torch.relu(self.widen(series[:, None])))[:, 0]

    return Model


class _Ssim:
    """Mean SSIM (Gaussian window 7, σ 1.5) over the axial slices of frames, of masked series scattered
    into the volume; `frames` (optional) picks the frames to score."""

    def __init__(self, shape: tuple, where, data_range: float, device) -> None:
        import torch

        self.shape, self.where = shape, where
        t = torch.arange(7, dtype=torch.float32, device=device) - 3
        g = torch.exp(-t**2 / (2 * 1.5**2))
        self.window = (g / g.sum()).repeat(5, 1, 1)  # one 1D kernel per statistic
        self.c1, self.c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def images(self, series):
        import torch

        nx, ny, nz = self.shape
        full = torch.zeros(nx * ny * nz, series.shape[1], device=series.device, dtype=series.dtype)
        full = full.index_copy(0, self.where, series)
        return full.reshape(nx, ny, nz, -1).permute(2, 3, 0, 1).reshape(-1, nx, ny)

    def __call__(self, pred, target, frames=None):
        import torch
        import torch.nn.functional as functional

        if min(self.shape[:2]) < 7:  # no room for the window: SSIM takes no part
            return torch.ones((), device=pred.device)
        if frames is not None:
            pred, target = pred[:, frames], target[:, frames]
        a, b = self.images(pred), self.images(target)
        stats = torch.stack([a, b, a * a, b * b, a * b], dim=1)  # (images, 5, x, y)
        n, _, nx, ny = stats.shape
        # separable blur: along y, then along x (grouped 1D convolutions, one group per statistic)
        rows = functional.conv1d(stats.permute(0, 2, 1, 3).reshape(n * nx, 5, ny), self.window, groups=5)
        cols = rows.reshape(n, nx, 5, -1).permute(0, 3, 2, 1).reshape(-1, 5, nx)
        blurred = functional.conv1d(cols, self.window, groups=5)
        mu_a, mu_b, aa, bb, ab = blurred.unbind(dim=1)
        var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
        score = ((2 * mu_a * mu_b + self.c1) * (2 * cov + self.c2)) / (
            (mu_a**2 + mu_b**2 + self.c1) * (var_a + var_b + self.c2))
        return score.mean()


def _shapes(config: Config, k: int, nt: int) -> list[tuple[int, int]]:
    """(out, in) of every stored matrix: SIREN layers and head, patterns, the two fusion convolutions."""
    widths = [3] + [config.units] * config.layers
    siren = list(zip(widths[1:], widths[:-1])) + [(k, config.units)]
    f, width = config.fusion_channels, config.fusion_kernel
    return siren + [(k, nt), (f, width), (1, f * width)]


def _series(arrays: list[np.ndarray], coords: np.ndarray, config: Config) -> np.ndarray:
    """Numpy forward pass: (N, T) normalised time series at `coords` (N, 3)."""
    n_siren = 2 * (config.layers + 1)
    maps = forward(arrays[:n_siren], coords.astype(np.float32), config.w0, "identity", ["sine"] * config.layers)
    patterns, thresholds, w1, b1, w2, b2 = arrays[n_siren:]
    maps = np.sign(maps) * np.maximum(np.abs(maps) - np.abs(thresholds.astype(np.float32)), 0)
    series = maps @ patterns.astype(np.float32)  # (N, T)
    return (series + _fusion(series, w1, b1, w2, b2, config.fusion_kernel)).astype(np.float64)


def _fusion(series: np.ndarray, w1, b1, w2, b2, width: int) -> np.ndarray:
    """conv(relu(conv(series))) over time, zero-padded 'same' convolutions (cross-correlation, as torch)."""
    half = width // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(series, ((0, 0), (half, half))), width, axis=1)
    hidden = np.maximum(windows @ w1.T.astype(np.float32) + b1.astype(np.float32), 0)  # (N, T, F)
    padded = np.pad(hidden, ((0, 0), (half, half), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)  # (N, T, F, width)
    kernel = w2.astype(np.float32).reshape(hidden.shape[2], width)
    return np.einsum("ntfw,fw->nt", windows, kernel) + np.float32(b2[0])


@lru_cache(maxsize=4)
def _unpacked(member: bytes, shape: tuple, k: int, config: Config,
              parts: int) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """The mean frame's integers (x, y, z), the mask (x, y, z; None in a version 0.3 member of 2 parts) and
    the model's arrays (cached: every slice shares the member)."""
    nx, ny, nz, nt = shape
    if len(member) < 4 * parts:
        raise ArchiveError("fmri member is truncated")
    sizes = np.frombuffer(member, dtype=HEADER, count=parts).astype(np.int64)
    if 4 * parts + sizes.sum() != len(member):
        raise ArchiveError("fmri member is truncated or has trailing bytes")
    pieces, offset = [], 4 * parts
    for size in sizes:
        pieces.append(member[offset:offset + size])
        offset += size
    mean_q = lossless.decode_member(pieces[0], (nx, ny, nz), np.dtype(np.int32), list(range(nz)), MEAN_CODER)
    mask = None
    if parts == 3:
        mask = lossless.decode_member(pieces[1], (nx, ny, nz), np.dtype(np.uint8), list(range(nz)), MEAN_CODER)
        if mask.max(initial=0) > 1:
            raise ArchiveError("the fmri mask is not a 0/1 image: the archive is damaged")
        mask = mask.astype(bool)
    arrays = unpack_weights(pieces[-1], _shapes(config, k, nt), config.weight_bits, "rans") if k else []
    return mean_q, mask, arrays
