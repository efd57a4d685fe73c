"""One checkpoint format for every trained session model: a directory with a manifest.

The central trainer, the Flower server (best and final round) and anything else that saves a
session model write the same thing, and the pipeline, the exporter and serving read it through
:func:`load_recommender`::

    <checkpoint>/
        manifest.json   {"format": "tandem-model", "format_version", "spec": {kind, model, train},
                         "n_items", "files": {"weights.pt": "<sha256>"}, "meta": {...}}
        weights.pt      {"state_dict": ..., "content": tensor | None}  (torch.save, weights only)

The manifest format (:func:`write_manifest` / :func:`read_manifest`: a format name, its version,
the model spec, the sha256 of every file) is shared with later artefacts such as serving bundles.
A checkpoint is written into a temporary directory and renamed into place; reading verifies every
checksum, so a corrupt or partial checkpoint is refused with a :class:`DataError`.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.storage import atomic_directory
from ranking.errors import ConfigError, DataError
from ranking.manifest import MANIFEST, Manifest, read_manifest, write_manifest
from ranking.spec import ModelSpec

__all__ = [
    "MANIFEST",
    "MODEL_FORMAT",
    "Manifest",
    "load_checkpoint",
    "read_manifest",
    "save_checkpoint",
    "write_manifest",
]

WEIGHTS = "weights.pt"
MODEL_FORMAT = "tandem-model"
MODEL_FORMAT_VERSION = 2


def save_checkpoint(
    path: str | Path,
    spec: ModelSpec,
    state_dict: Mapping[str, Any],
    n_items: int,
    *,
    content: torch.Tensor | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically; ``state_dict`` values may be arrays or tensors."""
    path = Path(path)
    tensors = {
        k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).detach().cpu()
        for k, v in state_dict.items()
    }
    with atomic_directory(path) as tmp:
        torch.save(
            {"state_dict": tensors, "content": None if content is None else content.cpu()},
            tmp / WEIGHTS,
        )
        write_manifest(
            tmp,
            format=MODEL_FORMAT,
            format_version=MODEL_FORMAT_VERSION,
            spec=spec.to_dict(),
            n_items=n_items,
            meta=meta,
        )
    return path


@dataclass(frozen=True)
class Checkpoint:
    spec: ModelSpec
    n_items: int
    state_dict: dict[str, torch.Tensor]
    content: torch.Tensor | None
    meta: dict[str, Any]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory (see the module docstring)."""
    path = Path(path)
    manifest = read_manifest(path, MODEL_FORMAT, MODEL_FORMAT_VERSION)
    try:
        weights = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        spec = ModelSpec.from_mapping(manifest.spec, where=f"{path / MANIFEST}: spec")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"not a readable checkpoint ({exc})", path=path) from exc
    except ConfigError as exc:
        raise DataError(str(exc), path=path / MANIFEST) from exc
    return Checkpoint(
        spec,
        int(manifest.n_items or 0),
        weights["state_dict"],
        weights["content"],
        manifest.meta or {},
    )
