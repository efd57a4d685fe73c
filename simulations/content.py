"""Content vectors for a run's catalog, from the ``encoder/`` config group.

``encoder=none`` gives none (ID-only models). ``encoder=tiny_trained`` trains tandem's tiny CLIP on
the catalog's (image, title) pairs; ``encoder=openclip`` loads any open_clip model from a cached tag,
a checkpoint file or a ``local-dir:`` folder. Trained weights and embeddings are cached under
``paths.cache_dir``, so a second run does no encoder work.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from encoders.clip import ClipEncoder
from encoders.contrastive import ContrastiveConfig, train_contrastive
from ranking.data.catalog import Catalog
from ranking.errors import ConfigError
from simulations.tracking import epoch_callback

log = logging.getLogger("tandem")

MODALITIES = ("text", "image")


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
    if kind not in ("tiny_trained", "openclip"):
        raise ConfigError(
            f"encoder.kind={kind!r} is not known; expected none, tiny_trained or openclip"
        )
    modalities = list(encoder_cfg.get("modalities", MODALITIES))
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise ConfigError(
            f"encoder.modalities must be a non-empty subset of {MODALITIES}, got {modalities}"
        )
    cache = Path(cache_dir)
    images = catalog_images(catalog) if "image" in modalities or kind == "tiny_trained" else None
    if "image" in modalities and images is None:
        raise ConfigError("encoder.modalities includes 'image' but the catalog has no images")
    if kind == "tiny_trained":
        encoder = _trained_tiny_clip(encoder_cfg, catalog, images, cache)
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
    """The tiny CLIP trained on this catalog (trained once, then loaded from the cache)."""
    if images is None:
        raise ConfigError(
            "encoder=tiny_trained trains on (image, text) pairs, but the catalog has no images"
        )
    epochs, lr, seed = (
        int(cfg.get("epochs", 15)),
        float(cfg.get("lr", 2e-3)),
        int(cfg.get("seed", 0)),
    )
    digest = hashlib.sha256("\0".join(catalog.text.tolist()).encode())
    digest.update(f"{epochs}/{lr}/{seed}/{cfg.get('loss', 'clip')}".encode())
    checkpoint = cache / "encoders" / f"tiny-clip-{digest.hexdigest()[:16]}.pt"
    if checkpoint.exists():
        return ClipEncoder(pretrained=str(checkpoint), cache_dir=cache / "embeddings")
    encoder = ClipEncoder(allow_random_init=True, seed=seed, cache_dir=cache / "embeddings")
    history = train_contrastive(
        encoder,
        images,
        list(catalog.text),
        ContrastiveConfig(
            epochs=epochs, lr=lr, seed=seed, loss=str(cfg.get("loss", "clip")), progress=True
        ),
        callback=epoch_callback("clip"),
    )
    log.info(
        "tiny CLIP trained on %d items: final loss %.4f",
        catalog.n_items,
        history[-1]["loss"] if history else float("nan"),
    )
    encoder.save_checkpoint(checkpoint)
    return encoder
