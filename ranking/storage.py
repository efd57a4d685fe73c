"""The on-disk format of a :class:`~ranking.data.Dataset` (one ``.npz``, written atomically).

The atomic-write helpers and ``config_key`` live in :mod:`encoders.storage` and are re-exported here.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np

from encoders.storage import (
    atomic_path,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_with,
    config_key,
)
from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import Interactions
from ranking.errors import DataError

FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "config_key",
    "load_dataset",
    "save_dataset",
]


_OPTIONAL_INTERACTION_COLUMNS = ("session", "event", "rating")


def save_dataset(dataset: Dataset, path: str | Path) -> None:
    """Write ``dataset`` to one ``.npz`` file, atomically."""
    cat, inter = dataset.catalog, dataset.interactions
    arrays: dict[str, np.ndarray] = {
        "catalog.ids": cat.ids,
        "catalog.text": cat.text,
        "catalog.category": cat.category,
        "catalog.available": cat.available,
        "catalog.created_at": cat.created_at,
        "inter.user": inter.user,
        "inter.item": inter.item,
        "inter.timestamp": inter.timestamp,
        "inter.user_ids": inter.user_ids,
    }
    if cat.image_paths is not None:
        arrays["catalog.image_paths"] = cat.image_paths
    for key, col in cat.attributes.items():
        arrays[f"attr.{key}"] = np.asarray(col)
    for name in _OPTIONAL_INTERACTION_COLUMNS:
        col = getattr(inter, name)
        if col is not None:
            arrays[f"inter.{name}"] = col
    meta = {
        "format_version": FORMAT_VERSION,
        "name": dataset.name,
        "category_names": list(cat.category_names),
        "event_names": list(inter.event_names),
        "n_items": inter.n_items,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    if cat.image_renderer is not None:
        arrays["catalog.image_renderer"] = np.frombuffer(
            pickle.dumps(cat.image_renderer), dtype=np.uint8
        )

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write_with(path, write)


def load_dataset(path: str | Path, *, images: bool = True) -> Dataset:
    """Read a dataset written by :func:`save_dataset`.

    ``images=False`` leaves out the catalog's image renderer (a pickled generator of the synthetic
    world's pictures, which needs the ``simulations`` package and its dependencies): a device
    training on its interactions needs no images, and the client install lacks those packages.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"not a readable dataset file ({exc})", path=path) from exc
    try:
        meta = json.loads(bytes(data["meta"]).decode())
    except (KeyError, ValueError) as exc:
        raise DataError("dataset file has no valid 'meta' entry", path=path) from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"dataset format {meta.get('format_version')} != {FORMAT_VERSION}", path=path
        )
    renderer = None
    if images and "catalog.image_renderer" in data:
        renderer = pickle.loads(data["catalog.image_renderer"].tobytes())  # our own cache file
    catalog = Catalog(
        ids=data["catalog.ids"],
        text=data["catalog.text"],
        category=data["catalog.category"],
        category_names=tuple(meta["category_names"]),
        attributes={k[len("attr.") :]: v for k, v in data.items() if k.startswith("attr.")},
        available=data["catalog.available"],
        created_at=data["catalog.created_at"],
        image_paths=data.get("catalog.image_paths"),
        image_renderer=renderer,
    )
    interactions = Interactions(
        user=data["inter.user"],
        item=data["inter.item"],
        timestamp=data["inter.timestamp"],
        user_ids=data["inter.user_ids"],
        n_items=int(meta["n_items"]),
        event_names=tuple(meta["event_names"]),
        **{name: data.get(f"inter.{name}") for name in _OPTIONAL_INTERACTION_COLUMNS},
    )
    return Dataset(name=meta["name"], catalog=catalog, interactions=interactions)
