"""Overfit a coordinate network to one set of samples, keeping the best checkpoint as it will be stored."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

# Called as report(epoch, loss, psnr) after each check; may raise to stop training.
Report = Callable[[int, float, float], None]


def fit(model: nn.Module, coords: np.ndarray, target: np.ndarray, column_weights: np.ndarray,
        epochs: int, lr: float, check_every: int, store_dtype: torch.dtype,
        device: torch.device, report: Report | None = None,
        bf16: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """Train `model` full-batch with Adam on the MSE between model(coords) and target.

    With `bf16`, forward and backward run under bf16 autocast (fp32 master weights); checks run in fp32.

    Every `check_every` epochs (and after the last) the parameters are rounded to `store_dtype`, as the
    archive stores them, and scored by the weighted error mean_v(w_v · mse_v); the best-scoring rounded
    parameters are returned (as numpy arrays of `store_dtype`) with that score.
    """
    model = model.to(device)
    x = torch.as_tensor(coords, dtype=torch.float32, device=device)
    y = torch.as_tensor(target, dtype=torch.float32, device=device)
    w = torch.as_tensor(column_weights, dtype=torch.float32, device=device) / y.shape[1]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    best_score, best = math.inf, None
    for epoch in range(1, epochs + 1):
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.mean((model(x).float() - y) ** 2)
        loss.backward()
        optimiser.step()
        if epoch % check_every and epoch != epochs:
            continue
        stored = {k: v.detach().to(store_dtype) for k, v in model.named_parameters()}
        with torch.no_grad():
            pred = functional_call(model, {k: v.float() for k, v in stored.items()}, (x,))
            score = float(((pred - y) ** 2).mean(dim=0) @ w)
        if score < best_score:
            best_score = score
            best = {k: v.cpu().numpy() for k, v in stored.items()}
        if report is not None:
            report(epoch, loss.item(), -10.0 * math.log10(max(score, 1e-30)))
    if best is None:
        raise FloatingPointError("training diverged: the loss is not finite")
    return best, best_score
