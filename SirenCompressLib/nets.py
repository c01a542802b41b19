"""Coordinate networks in torch (training only; decoding uses the numpy forward pass in the codecs)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .network import layer_activations


class SineLayer(nn.Module):
    """sin(w0 · (W x + b)) with SIREN initialisation: U(±1/in) for the first layer, U(±√(6/in)/w0) after."""

    def __init__(self, n_in: int, n_out: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(n_in, n_out)
        _siren_uniform(self.linear, 1.0 / n_in if first else math.sqrt(6.0 / n_in) / w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


class PlainLayer(nn.Module):
    """act(W x + b) with PyTorch's default initialisation, for the paper's MLP baselines."""

    def __init__(self, n_in: int, n_out: int, activation: str) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class Siren(nn.Module):
    """`layers` hidden layers of `units` units, then a linear output layer (optionally followed by ReLU).

    The hidden layers are sine layers (SIREN), or, for the paper's baselines, ReLU or tanh layers, or a
    sine first layer followed by ReLU layers (`activation`, see `layer_activations`).

    With `basis` K > 0 the output is low-rank: the head gives K coefficients and a second linear map
    (K → n_out, the q-space basis and mean, see `set_basis`) gives the n_out values.
    Parameters are registered in evaluation order, weight then bias of each linear map: the order in
    which the archive stores them.
    """

    def __init__(self, n_in: int, n_out: int, layers: int, units: int, w0: float,
                 final_activation: str = "identity", basis: int = 0, activation: str = "sine") -> None:
        super().__init__()
        widths = [n_in] + [units] * layers
        kinds = layer_activations(activation, layers)
        self.body = nn.Sequential(*[SineLayer(a, b, w0, i == 0) if kind == "sine" else PlainLayer(a, b, kind)
                                    for i, (a, b, kind) in enumerate(zip(widths, widths[1:], kinds))])
        self.head = nn.Linear(units, basis or n_out)
        if kinds[-1] == "sine":
            _siren_uniform(self.head, math.sqrt(6.0 / units) / w0)
        self.basis = nn.Linear(basis, n_out) if basis else None
        self.final_relu = final_activation == "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(x))
        if self.basis is not None:
            y = self.basis(y)
        return torch.relu(y) if self.final_relu else y

    def set_basis(self, target: torch.Tensor) -> None:
        """Initialise the low-rank output from a PCA of `target` (samples × n_out): the leading principal
        directions, each scaled by its coefficients' standard deviation (so the network's K outputs have
        unit variance), as the basis, and the mean as its bias."""
        mean = target.mean(dim=0)
        _, _, vt = torch.linalg.svd(target - mean, full_matrices=False)
        k = min(self.basis.in_features, vt.shape[0])
        spread = ((target - mean) @ vt[:k].T).std(dim=0).clamp_min(1e-8)
        with torch.no_grad():
            self.basis.weight.zero_()
            self.basis.weight[:, :k] = vt[:k].T * spread
            self.basis.bias.copy_(mean)


def _siren_uniform(linear: nn.Linear, bound: float) -> None:
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)
        linear.bias.uniform_(-bound, bound)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train with bf16 autocast: "bf16" always, "fp32" never, "auto" where the hardware has fast
    bf16 (CUDA GPUs that support it; CPUs with AVX-512 BF16 or AMX)."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(name: str) -> torch.device:
    """"auto" takes CUDA when present, else the CPU; "cuda" without a GPU is an error."""
    from .errors import InputError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch finds no CUDA GPU")
    return torch.device(name)
