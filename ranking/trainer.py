"""The one training loop of the neural sequence models.

* :func:`train_epochs`: the training core -- a few epochs over a set of user sequences. Central
  training (:class:`ranking.recommender.SequenceRecommender`) and the federated client both call it.
* :class:`~ranking.train_config.TrainConfig` (its settings) lives in :mod:`ranking.train_config`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ranking.data import PAD, UserSequences, sequence_windows
from ranking.errors import ConfigError
from ranking.losses import NegativeSampler, bce_loss, cross_entropy_loss, sampled_softmax_loss
from ranking.models import SequenceModel
from ranking.train_config import TrainConfig

__all__ = [
    "PlainSGD",
    "StepOptimizer",
    "batch_negatives",
    "make_optimizer",
    "resolve_device",
    "train_epochs",
]


def resolve_device(name: str) -> torch.device:
    """The torch device for a :attr:`TrainConfig.device` value."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device: {exc}") from exc


class StepOptimizer(Protocol):
    """What :func:`train_epochs` needs of an optimizer."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> Any: ...


class PlainSGD:
    """``θ ← θ − lr·∇θ``: the update of ``torch.optim.SGD`` with its defaults (no momentum, no
    weight decay), as its per-tensor path computes it on the CPU, without a
    ``torch.optim.Optimizer``: the first one a process builds imports ``torch._dynamo`` and sympy
    (about 100 MB of resident memory, measured on an edge client with torch 2.13)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float) -> None:
        self.params = list(params)  # like torch.optim.SGD: a step skips those without a grad
        self.lr = float(lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The AdamW optimizer of :func:`train_epochs`."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def batch_negatives(sampled: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The shared negatives of a sampled-softmax batch: the sampled ids, plus the batch's own
    target items when ``cfg.in_batch_negatives`` (0-based ids; a row's own positive is masked later)."""
    if not cfg.in_batch_negatives:
        return sampled
    in_batch = (targets[targets != PAD] - 1).unique()
    return torch.cat([sampled, in_batch.to(sampled.dtype)])


def _batch_loss(
    model: SequenceModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
) -> torch.Tensor:
    hidden = model(inputs)
    table = model.item_table()
    if cfg.loss == "ce":
        return cross_entropy_loss(hidden, targets, table)
    assert sampler is not None
    if cfg.loss == "sampled":
        negatives = batch_negatives(
            sampler.sample(cfg.n_negatives, rng).to(inputs.device), targets, cfg
        )
        log_q = sampler.log_q.to(inputs.device) if cfg.logq_correction else None
        return sampled_softmax_loss(hidden, targets, table, negatives, log_q)
    negatives = sampler.sample(tuple(targets.shape), rng).to(inputs.device)
    return bce_loss(hidden, targets, table, negatives)


def train_epochs(
    model: SequenceModel,
    sequences: UserSequences,
    cfg: TrainConfig,
    epochs: int = 1,
    *,
    item_counts: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    optimizer: StepOptimizer | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` epochs of next-item prediction on ``sequences``.

    Parameters
    ----------
    model:
        A :class:`~ranking.models.base.SequenceModel`, already on its device.
    sequences:
        The users' training sequences (e.g. ``interactions.sequences()``); they are cut into
        windows by :func:`ranking.data.sequence_windows` with ``cfg.max_len`` and
        ``cfg.cover_history``, and every non-PAD position of a window is a training target.
    cfg:
        Batch size, loss, learning rate, clipping... (``cfg.epochs`` is ignored; ``epochs`` counts).
    epochs:
        Epochs to run now.
    item_counts:
        Interactions per item for popularity-drawn negatives (default: counted on ``sequences``).
    rng:
        NumPy generator (or seed) for shuffling and negative sampling; default ``cfg.seed``.
        Dropout draws from torch's global generator (seed it with ``torch.manual_seed``).
    optimizer:
        Continue with this optimizer (keeps Adam's moments across calls); default: a fresh
        :func:`make_optimizer`.
    penalty:
        Optional extra term added to every batch loss, e.g. FedProx's proximal term
        ``mu / 2 * ||w - w_global||^2``.

    Returns
    -------
    ``{"loss": mean loss per target of the last epoch, "epoch_losses": [...], "seconds": wall
    time, "n_examples": training windows, "n_targets": target positions per epoch, "steps":
    optimizer steps}``. With no window (every sequence shorter than 2) nothing is trained and
    ``loss`` is NaN.
    """
    start = time.perf_counter()
    rng = (
        rng
        if isinstance(rng, np.random.Generator)
        else np.random.default_rng(cfg.seed if rng is None else rng)
    )
    inputs, targets = sequence_windows(sequences, cfg.max_len, cover_history=cfg.cover_history)
    n_windows = len(inputs)
    n_targets = int((targets != PAD).sum())
    result: dict[str, Any] = {
        "loss": math.nan,
        "epoch_losses": [],
        "seconds": 0.0,
        "n_examples": n_windows,
        "n_targets": n_targets,
        "steps": 0,
    }
    if n_windows == 0 or epochs <= 0:
        result["seconds"] = time.perf_counter() - start
        return result
    device = next(model.parameters()).device
    sampler = None
    if cfg.loss != "ce":
        if cfg.negative_sampling == "popularity" and item_counts is None:
            item_counts = np.bincount(sequences.items, minlength=model.n_items)
        sampler = NegativeSampler(model.n_items, cfg.negative_sampling, item_counts)
    optimizer = optimizer or make_optimizer(model, cfg)
    inputs_t = torch.from_numpy(inputs)
    targets_t = torch.from_numpy(targets)
    model.train()
    steps = 0
    for _ in range(epochs):
        total, weight = 0.0, 0
        order = torch.from_numpy(rng.permutation(n_windows))
        for lo in range(0, n_windows, cfg.batch_size):
            if max_steps is not None and steps >= max_steps:
                break  # a device's cap on local work (fl.device_rules)
            idx = order[lo : lo + cfg.batch_size]
            x = inputs_t[idx].to(device, non_blocking=True)
            y = targets_t[idx].to(device, non_blocking=True)
            count = int((y != PAD).sum())
            if count == 0:
                continue
            loss = _batch_loss(model, x, y, cfg, sampler, rng)
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * count
            weight += count
        result["epoch_losses"].append(total / max(weight, 1))
    result["loss"] = result["epoch_losses"][-1]
    result["steps"] = steps
    result["seconds"] = time.perf_counter() - start
    return result
