"""Contrastive training / fine-tuning of a CLIP model on a catalog's (image, text) pairs.

Uses open_clip's own losses: ``ClipLoss`` (InfoNCE both ways) or ``SigLipLoss`` (pairwise sigmoid;
the model then needs a ``logit_bias``, e.g. ``model_kwargs={"init_logit_bias": -10}``).
:func:`retrieval_recall` reports image→text and text→image R@K on held-out pairs, where a hit is any
item with the same text as the query's (synthetic catalogs repeat titles).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encoders.clip import ClipEncoder
from encoders.errors import ConfigError


@dataclass(frozen=True)
class ContrastiveConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    loss: str = "clip"  # clip | siglip
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.loss not in ("clip", "siglip"):
            raise ConfigError(
                f"contrastive loss {self.loss!r} is not known; expected 'clip' or 'siglip'"
            )
        if self.epochs < 0 or self.batch_size < 2:
            raise ConfigError("contrastive training needs epochs >= 0 and batch_size >= 2")


def _make_loss(name: str) -> torch.nn.Module:
    from open_clip.loss import ClipLoss, SigLipLoss

    return ClipLoss() if name == "clip" else SigLipLoss()


def train_contrastive(
    encoder: ClipEncoder,
    images: Sequence[Any],
    texts: Sequence[str],
    config: ContrastiveConfig | None = None,
    *,
    callback: Callable[[int, dict[str, float], ClipEncoder], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``encoder``'s model on aligned ``images``/``texts``; returns one row per epoch.

    ``callback(epoch, row, encoder)`` is called after every epoch (``epoch`` counts from 1).
    """
    cfg = config or ContrastiveConfig()
    if len(images) != len(texts):
        raise ConfigError(
            f"contrastive training needs as many images ({len(images)}) as texts ({len(texts)})"
        )
    if cfg.loss == "siglip" and getattr(encoder.model, "logit_bias", None) is None:
        raise ConfigError(
            "SigLIP loss needs a model with a logit_bias: build it with model_kwargs={'init_logit_bias': -10}"
        )
    from tqdm.auto import trange

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pixels = encoder.image_tensor(list(images))
    tokens = encoder.tokenize(list(texts))
    model = encoder.model
    loss_fn = _make_loss(cfg.loss)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    model.train()
    for epoch in trange(cfg.epochs, desc="contrastive", disable=not cfg.progress):
        t0 = time.perf_counter()
        order = rng.permutation(len(texts))
        total, batches = 0.0, 0
        for lo in range(0, len(order) - 1, cfg.batch_size):
            idx = torch.as_tensor(order[lo : lo + cfg.batch_size])
            if len(idx) < 2:
                continue
            image_features, text_features, logit_scale, *bias = model(pixels[idx], tokens[idx])
            loss = loss_fn(image_features, text_features, logit_scale, *bias)
            optim.zero_grad()
            loss.backward()
            optim.step()
            with torch.no_grad():  # CLIP clamps the temperature to at most 100
                model.logit_scale.clamp_(0, np.log(100))
            total += float(loss.detach())
            batches += 1
        row = {
            "epoch": epoch + 1,
            "loss": total / max(1, batches),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if callback is not None:
            callback(epoch + 1, row, encoder)
    model.eval()
    encoder.weights_changed()
    return history


def retrieval_recall(
    encoder: ClipEncoder, images: Sequence[Any], texts: Sequence[str], ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """Image→text and text→image recall@K over the given pairs (hits: same text as the query)."""
    img = encoder.embed_images(images)
    txt = encoder.embed_texts(texts)
    labels = np.unique(np.asarray(texts), return_inverse=True)[1]
    sims = img @ txt.T  # [n_images, n_texts]
    out: dict[str, float] = {}
    for name, matrix in (("i2t", sims), ("t2i", sims.T)):
        top = np.argsort(-matrix, axis=1)
        hits = labels[top] == labels[:, None]
        for k in ks:
            out[f"{name}_r@{k}"] = float(hits[:, :k].any(axis=1).mean())
    return out
