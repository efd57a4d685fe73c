"""Content vectors for a run's catalog, from the ``encoder/`` config group.

``encoder=none`` gives none (ID-only models). ``encoder=tiny_trained`` trains tandem's tiny CLIP on
the catalog's (image, title) pairs; ``encoder=tiny_text`` trains only its text tower, on two views of
each item's text (title against the other fields, e.g. genres: for catalogs without images such as
MovieLens), and gives text vectors only; ``encoder=openclip`` loads any open_clip model from a
cached tag, a checkpoint file or a ``local-dir:`` folder. Trained weights and embeddings are cached
under ``paths.cache_dir``, so a second run does no encoder work.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from encoders.clip import ClipEncoder
from encoders.contrastive import (
    ContrastiveConfig,
    text_views,
    train_contrastive,
    train_text_contrastive,
)
from ranking.data.catalog import Catalog
from ranking.errors import ConfigError
from simulations.tracking import epoch_callback

log = logging.getLogger("tandem")

MODALITIES = ("text", "image")
KINDS = ("none", "tiny_trained", "tiny_text", "openclip")


def catalog_images(catalog: Catalog) -> list[Any] | None:
    """Every item's image, or ``None`` when the catalog has none at all."""
    if catalog.image_renderer is None and catalog.image_paths is None:
        return None
    images = [catalog.image(i) for i in range(catalog.n_items)]
    return images if all(img is not None for img in images) else None


def content_vectors(
    encoder_cfg: dict[str, Any], catalog: Catalog, cache_dir: str | Path
) -> np.ndarray | None:
    """``[n_items, C]`` content vectors (text and/or image embeddings, concatenated), or ``None``."""
    parts = content_parts(encoder_cfg, catalog, cache_dir)
    return np.concatenate(list(parts.values()), axis=1) if parts else None


def content_parts(
    encoder_cfg: dict[str, Any], catalog: Catalog, cache_dir: str | Path
) -> dict[str, np.ndarray]:
    """``{modality: [n_items, D]}`` embeddings of the configured modalities (empty for ``none``)."""
    kind = encoder_cfg.get("kind", "none")
    if kind == "none":
        return {}
    if kind not in KINDS:
        raise ConfigError(f"encoder.kind={kind!r} is not known; expected one of {', '.join(KINDS)}")
    default_modalities = ("text",) if kind == "tiny_text" else MODALITIES
    modalities = list(encoder_cfg.get("modalities", default_modalities))
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise ConfigError(
            f"encoder.modalities must be a non-empty subset of {MODALITIES}, got {modalities}"
        )
    if kind == "tiny_text" and "image" in modalities:
        raise ConfigError(
            f"encoder=tiny_text trains and embeds text only, but encoder.modalities={modalities}; "
            "use encoder.modalities=[text], or encoder=tiny_trained for images"
        )
    cache = Path(cache_dir)
    images = catalog_images(catalog) if "image" in modalities or kind == "tiny_trained" else None
    if "image" in modalities and images is None:
        raise ConfigError("encoder.modalities includes 'image' but the catalog has no images")
    if kind == "tiny_trained":
        encoder = _trained_tiny_clip(encoder_cfg, catalog, images, cache)
    elif kind == "tiny_text":
        encoder = _trained_tiny_text(encoder_cfg, catalog, cache)
    else:
        encoder = ClipEncoder(
            str(encoder_cfg["model"]),
            encoder_cfg.get("pretrained"),
            cache_dir=cache / "embeddings",
            batch_size=int(encoder_cfg.get("batch_size", 256)),
            num_threads=encoder_cfg.get("num_threads"),
        )
    parts: dict[str, np.ndarray] = {}
    if "text" in modalities:
        parts["text"] = encoder.embed_texts(list(catalog.text))
    if "image" in modalities:
        parts["image"] = encoder.embed_images(images)
    return parts


def _trained_tiny_clip(
    cfg: dict[str, Any], catalog: Catalog, images: list[Any] | None, cache: Path
) -> ClipEncoder:
    """The tiny CLIP trained on this catalog's (image, text) pairs (then loaded from the cache)."""
    if images is None:
        raise ConfigError(
            "encoder=tiny_trained trains on (image, text) pairs, but the catalog has no images"
        )

    def train(encoder: ClipEncoder, config: ContrastiveConfig) -> list[dict[str, float]]:
        return train_contrastive(
            encoder, images, list(catalog.text), config, callback=epoch_callback("clip")
        )

    return _cached_training(cfg, catalog, cache, "tiny-clip", train)


def _trained_tiny_text(cfg: dict[str, Any], catalog: Catalog, cache: Path) -> ClipEncoder:
    """The tiny CLIP whose text tower is trained on this catalog's two text views (title against
    the other fields or the category name), then loaded from the cache."""
    titles, rests = text_views(catalog.text.tolist(), catalog.category, catalog.category_names)

    def train(encoder: ClipEncoder, config: ContrastiveConfig) -> list[dict[str, float]]:
        return train_text_contrastive(
            encoder, titles, rests, config, callback=epoch_callback("clip_text")
        )

    return _cached_training(cfg, catalog, cache, "tiny-text", train)


def _cached_training(
    cfg: dict[str, Any],
    catalog: Catalog,
    cache: Path,
    name: str,
    train: Callable[[ClipEncoder, ContrastiveConfig], list[dict[str, float]]],
) -> ClipEncoder:
    """The tiny CLIP that ``train`` fits on this catalog: trained once per (catalog text, settings,
    ``name``), written to ``cache/encoders/<name>-<key>.pt``, and loaded from there afterwards."""
    config = ContrastiveConfig(
        epochs=int(cfg.get("epochs", 15)),
        lr=float(cfg.get("lr", 2e-3)),
        seed=int(cfg.get("seed", 0)),
        loss=str(cfg.get("loss", "clip")),
        batch_size=int(cfg.get("batch_size", ContrastiveConfig.batch_size)),
        progress=True,
    )
    digest = hashlib.sha256("\0".join(catalog.text.tolist()).encode())
    digest.update(f"{config.epochs}/{config.lr}/{config.seed}/{config.loss}".encode())
    if "batch_size" in cfg:  # absent from older configs: their cached checkpoints keep their key
        digest.update(f"/{config.batch_size}".encode())
    checkpoint = cache / "encoders" / f"{name}-{digest.hexdigest()[:16]}.pt"
    if checkpoint.exists():
        return ClipEncoder(pretrained=str(checkpoint), cache_dir=cache / "embeddings")
    encoder = ClipEncoder(allow_random_init=True, seed=config.seed, cache_dir=cache / "embeddings")
    history = train(encoder, config)
    log.info(
        "%s trained on %d items: final loss %.4f",
        name,
        catalog.n_items,
        history[-1]["loss"] if history else float("nan"),
    )
    encoder.save_checkpoint(checkpoint)
    return encoder
