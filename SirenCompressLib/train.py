"""Overfit coordinate networks to their samples, several at once, keeping the best checkpoint of each as it
will be stored."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

# Called as report(epoch, loss, psnr) after each check (psnr of this check, the lowest of the batch); may raise
# to stop.
Report = Callable[[int, float, float], None]
# Maps parameters to their values as the archive stores them, with an identity (straight-through) gradient.
Store = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def fit(models: list[nn.Module], coords: np.ndarray, targets: np.ndarray, column_weights: np.ndarray,
        epochs: int, lr: float, check_every: int, store: Store, device: torch.device,
        report: Report | None = None, bf16: bool = False, qat_epochs: int = 0,
        target_psnr: float = 0.0, cosine: bool = False) -> list[tuple[dict[str, np.ndarray], float]]:
    """Train S networks of one architecture together, full-batch, with Adam on the MSE between network s at
    `coords` (N, inputs) and targets[s] (S, N, outputs).

    The networks are stacked and evaluated with vmap, so a batch costs about one network on a GPU; the
    losses are summed and Adam works element by element, so each network trains exactly as it would alone.
    After `epochs`, `qat_epochs` more epochs train through `store` (quantisation-aware fine-tuning).
    Every `check_every` epochs (and after the last) the parameters as stored are scored by the weighted
    error mean_v(w_sv · mse_sv); the raw parameters of each network's best check are returned (numpy, by
    name) with that score. With `bf16`, forward and backward run under bf16 autocast; checks run in fp32.
    With `target_psnr` > 0, a network keeps its first check that reaches it, and training stops once all
    have. With `cosine`, the learning rate decays from `lr` to zero over `epochs` by a half cosine (and
    stays at lr/100 for QAT).
    """
    params, _ = stack_module_state([m.to(device) for m in models])
    skeleton = copy.deepcopy(models[0]).to("meta")
    x = torch.as_tensor(coords, dtype=torch.float32, device=device)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32, device=device)
    w = torch.as_tensor(np.asarray(column_weights), dtype=torch.float32, device=device) / y.shape[2]
    plain = vmap(lambda p: functional_call(skeleton, p, (x,)))
    stored = vmap(lambda p: functional_call(skeleton, store(p), (x,)))
    optimiser = torch.optim.Adam(params.values(), lr=lr)
    total = epochs + qat_epochs

    def rate(epoch: int) -> float:
        if not cosine:
            return lr
        if epoch > epochs:
            return lr / 100
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))

    n = len(models)
    best_score, best = [math.inf] * n, [None] * n
    reached = [False] * n
    for epoch in range(1, total + 1):
        for group in optimiser.param_groups:
            group["lr"] = rate(epoch)
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = stored(params) if epoch > epochs else plain(params)
            losses = torch.mean((pred.float() - y) ** 2, dim=(1, 2))
        losses.sum().backward()
        optimiser.step()
        if epoch % check_every and epoch != total:
            continue
        with torch.no_grad():
            scores = (((stored(params) - y) ** 2).mean(dim=1) * w).sum(dim=1).tolist()
        for s, score in enumerate(scores):
            if not reached[s] and score < best_score[s]:
                best_score[s] = score
                best[s] = {k: v[s].detach().cpu().numpy().copy() for k, v in params.items()}
            reached[s] = reached[s] or 0 < target_psnr <= _psnr(score)
        if report is not None:
            report(epoch, float(losses.detach().mean()), min(_psnr(score) for score in scores))
        if all(reached):
            break
    if any(b is None for b in best):
        raise FloatingPointError("training diverged: the loss is not finite")
    return list(zip(best, best_score))


def _psnr(score: float) -> float:
    return -10.0 * math.log10(max(score, 1e-30))
