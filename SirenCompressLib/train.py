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
# Maps parameters to their values as the archive stores them, with an identity (straight-through) gradient.
Store = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def fit(model: nn.Module, coords: np.ndarray, target: np.ndarray, column_weights: np.ndarray,
        epochs: int, lr: float, check_every: int, store: Store, device: torch.device,
        report: Report | None = None, bf16: bool = False, qat_epochs: int = 0,
        target_psnr: float = 0.0, cosine: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """Train `model` full-batch with Adam on the MSE between model(coords) and target.

    After `epochs`, `qat_epochs` more epochs train through `store` (quantisation-aware fine-tuning).
    Every `check_every` epochs (and after the last) the parameters as stored are scored by the weighted
    error mean_v(w_v · mse_v); the raw parameters of the best check are returned (numpy, by name) with
    that score. With `bf16`, forward and backward run under bf16 autocast; checks run in fp32.
    With `target_psnr` > 0, training stops at the first check whose PSNR reaches it. With `cosine`, the
    learning rate decays from `lr` to zero over `epochs` by a half cosine (and stays at lr/100 for QAT).
    """
    model = model.to(device)
    x = torch.as_tensor(coords, dtype=torch.float32, device=device)
    y = torch.as_tensor(target, dtype=torch.float32, device=device)
    w = torch.as_tensor(column_weights, dtype=torch.float32, device=device) / y.shape[1]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs + qat_epochs

    def rate(epoch: int) -> float:
        if not cosine:
            return lr
        if epoch > epochs:
            return lr / 100
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))

    best_score, best = math.inf, None
    for epoch in range(1, total + 1):
        for group in optimiser.param_groups:
            group["lr"] = rate(epoch)
        optimiser.zero_grad(set_to_none=True)
        params = dict(model.named_parameters())
        if epoch > epochs:
            params = store(params)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.mean((functional_call(model, params, (x,)).float() - y) ** 2)
        loss.backward()
        optimiser.step()
        if epoch % check_every and epoch != total:
            continue
        with torch.no_grad():
            pred = functional_call(model, store(dict(model.named_parameters())), (x,))
            score = float(((pred - y) ** 2).mean(dim=0) @ w)
        if score < best_score:
            best_score = score
            best = {k: v.detach().cpu().numpy().copy() for k, v in model.named_parameters()}
        psnr = -10.0 * math.log10(max(score, 1e-30))
        if report is not None:
            report(epoch, loss.item(), psnr)
        if 0 < target_psnr <= psnr:
            break
    if best is None:
        raise FloatingPointError("training diverged: the loss is not finite")
    return best, best_score
