"""Contrastive training / fine-tuning of a CLIP model on a catalog's (image, text) pairs, or of its
text tower alone on two text views of each item (:func:`train_text_contrastive`, for catalogs
without images: :func:`text_views` splits "title | genres" into the title and the rest).

Uses open_clip's own losses: ``ClipLoss`` (InfoNCE both ways) or ``SigLipLoss`` (pairwise sigmoid;
the model then needs a ``logit_bias``, e.g. ``model_kwargs={"init_logit_bias": -10}``).
:func:`retrieval_recall` reports image→text and text→image R@K on held-out pairs, where a hit is any
item with the same text as the query's (synthetic catalogs repeat titles).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encoders.clip import ClipEncoder
from encoders.errors import ConfigError

EpochCallback = Callable[[int, dict[str, float], ClipEncoder], None]


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


def _check_pairs(first: str, n_first: int, second: str, n_second: int) -> None:
    """Contrastive pairs are aligned: as many of the first kind as of the second."""
    if n_first != n_second:
        raise ConfigError(
            f"contrastive training needs as many {first} ({n_first}) as {second} ({n_second})"
        )


def train_contrastive(
    encoder: ClipEncoder,
    images: Sequence[Any],
    texts: Sequence[str],
    config: ContrastiveConfig | None = None,
    *,
    callback: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Train ``encoder``'s model on aligned ``images``/``texts``; returns one row per epoch.

    ``callback(epoch, row, encoder)`` is called after every epoch (``epoch`` counts from 1).
    """
    cfg = config or ContrastiveConfig()
    _check_pairs("images", len(images), "texts", len(texts))
    _check_loss(encoder, cfg)
    pixels = encoder.image_tensor(list(images))
    tokens = encoder.tokenize(list(texts))
    model = encoder.model
    loss_fn = _make_loss(cfg.loss)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        image_features, text_features, logit_scale, *bias = model(pixels[idx], tokens[idx])
        return loss_fn(image_features, text_features, logit_scale, *bias)

    return _train_epochs(
        encoder, len(texts), model.parameters(), batch_loss, cfg, callback, "contrastive"
    )


def train_text_contrastive(
    encoder: ClipEncoder,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    config: ContrastiveConfig | None = None,
    *,
    callback: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Train only ``encoder``'s text tower (and temperature) so that each item's two text views
    (e.g. :func:`text_views`: title and genres) embed close together; returns one row per epoch.

    The loss is the configured one between the two views' text features, in both directions for
    ``clip``. The image tower is left as it is. ``callback`` as in :func:`train_contrastive`.
    """
    cfg = config or ContrastiveConfig()
    _check_pairs("first views", len(texts_a), "second views", len(texts_b))
    _check_loss(encoder, cfg)
    tokens_a = encoder.tokenize(list(texts_a))
    tokens_b = encoder.tokenize(list(texts_b))
    model = encoder.model
    loss_fn = _make_loss(cfg.loss)
    bias = [] if getattr(model, "logit_bias", None) is None else [model.logit_bias]

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        features_a = model.encode_text(tokens_a[idx], normalize=True)
        features_b = model.encode_text(tokens_b[idx], normalize=True)
        return loss_fn(features_a, features_b, model.logit_scale.exp(), *bias)

    text_tower = [p for name, p in model.named_parameters() if not name.startswith("visual.")]
    return _train_epochs(
        encoder, len(texts_a), text_tower, batch_loss, cfg, callback, "text contrastive"
    )


def text_views(
    texts: Sequence[str], category: Sequence[int], category_names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Two views of each item's text for :func:`train_text_contrastive`.

    View A is the first ``" | "`` field of the text (the title); view B is the remaining fields
    (e.g. year and genres), or, for a text without ``" | "``, the item's category name
    (``category[i] >= 0`` indexes ``category_names``). An item with neither is a ConfigError.
    """
    titles: list[str] = []
    rests: list[str] = []
    missing: list[int] = []
    for i, (text, code) in enumerate(zip(texts, category, strict=True)):
        title, _, rest = str(text).partition(" | ")
        if not rest.strip() and int(code) >= 0:
            rest = str(category_names[int(code)])
        if not rest.strip():
            missing.append(i)
        titles.append(title)
        rests.append(rest)
    if missing:
        raise ConfigError(
            f"{len(missing)} items have no second text view (no ' | ' field after the title and "
            f"no category), first item index {missing[0]}: {str(texts[missing[0]])!r}"
        )
    return titles, rests


def _check_loss(encoder: ClipEncoder, cfg: ContrastiveConfig) -> None:
    if cfg.loss == "siglip" and getattr(encoder.model, "logit_bias", None) is None:
        raise ConfigError(
            "SigLIP loss needs a model with a logit_bias: build it with model_kwargs={'init_logit_bias': -10}"
        )


def _train_epochs(
    encoder: ClipEncoder,
    n_pairs: int,
    parameters: Iterable[torch.nn.Parameter],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    cfg: ContrastiveConfig,
    callback: EpochCallback | None,
    desc: str,
) -> list[dict[str, float]]:
    """The epoch loop: shuffled mini-batches of pair indices, ``batch_loss(idx)`` minimised by
    AdamW over ``parameters``; one history row per epoch, passed to ``callback``."""
    from tqdm.auto import trange

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = encoder.model
    optim = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    model.train()
    for epoch in trange(cfg.epochs, desc=desc, disable=not cfg.progress):
        t0 = time.perf_counter()
        order = rng.permutation(n_pairs)
        total, batches = 0.0, 0
        for lo in range(0, len(order) - 1, cfg.batch_size):
            idx = torch.as_tensor(order[lo : lo + cfg.batch_size])
            if len(idx) < 2:
                continue
            loss = batch_loss(idx)
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
