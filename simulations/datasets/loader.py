"""Build a dataset from its config, through an on-disk cache keyed by that config.

A dataset config is a mapping with a ``_target_`` (the reader function, e.g.
``simulations.datasets.synthetic.synthetic_dataset``) and the reader's keyword arguments. The cache
key covers the config, the filters, the storage format and, for file readers, the size and
modification time of every source file, so editing a source file or a setting invalidates the entry.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ranking.data.dataset import Dataset
from ranking.errors import ConfigError, DataError
from ranking.storage import FORMAT_VERSION, config_key, load_dataset, save_dataset

log = logging.getLogger(__name__)

PATH_ARGUMENTS = ("path", "directory", "items_path")
"""Reader keyword arguments that name source files or folders (fingerprinted for the cache key)."""


def resolve_reader(config: Mapping[str, Any]) -> functools.partial:
    """The reader named by the config's ``_target_``, bound to its settings, not yet called:
    Hydra's ``instantiate(..., _partial_=True)``, so that the cache is consulted first."""
    from hydra.utils import instantiate

    target = config["_target_"]
    try:
        reader = instantiate(dict(config), _partial_=True, _convert_="all")
    except Exception as exc:  # hydra raises several types here
        raise ConfigError(f"dataset reader {target!r} cannot be imported: {exc}") from exc
    try:
        inspect.signature(reader.func).bind(*reader.args, **reader.keywords)
    except TypeError as exc:
        raise ConfigError(
            f"dataset reader {target!r} rejected its settings {sorted(reader.keywords)}: {exc}"
        ) from exc
    return reader


def source_fingerprint(kwargs: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file named by a path argument (recursing into folders)."""
    out: list[tuple[str, int, int]] = []
    for name in PATH_ARGUMENTS:
        value = kwargs.get(name)
        if value is None:
            continue
        root = Path(value)
        if not root.exists():
            raise DataError(f"source named by {name!r} does not exist", path=root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return out


def apply_filters(dataset: Dataset, filters: Mapping[str, Any] | None) -> Dataset:
    """Apply the optional minimum-rating and k-core filters named in ``filters``."""
    from simulations.datasets import filters as f

    filters = dict(filters or {})
    unknown = sorted(set(filters) - {"min_rating", "user_k", "item_k"})
    if unknown:
        raise ConfigError(f"unknown dataset filter(s) {unknown}; known: min_rating, user_k, item_k")
    if filters.get("min_rating") is not None:
        dataset = f.min_rating(dataset, float(filters["min_rating"]))
    user_k, item_k = int(filters.get("user_k") or 0), int(filters.get("item_k") or 0)
    if user_k > 1 or item_k > 1:
        dataset = f.k_core(dataset, user_k=max(user_k, 1), item_k=max(item_k, 1))
    return dataset


def cache_key_for(config: Mapping[str, Any], filters: Mapping[str, Any] | None = None) -> str:
    kwargs = {k: v for k, v in config.items() if k != "_target_"}
    return config_key(
        {
            "format": FORMAT_VERSION,
            "dataset": dict(config),
            "filters": dict(filters or {}),
            "sources": source_fingerprint(kwargs),
        }
    )


def load(
    config: Mapping[str, Any],
    *,
    cache_dir: str | Path | None = None,
    filters: Mapping[str, Any] | None = None,
) -> Dataset:
    """The dataset described by ``config``, read from the cache when an entry for it exists."""
    return load_with_path(config, cache_dir=cache_dir, filters=filters)[0]


def load_with_path(
    config: Mapping[str, Any],
    *,
    cache_dir: str | Path | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[Dataset, Path | None]:
    """Like :func:`load`, also returning the cache file (``None`` without a cache folder)."""
    config = dict(config)
    target = config.get("_target_")
    if not target:
        raise ConfigError("dataset config needs a '_target_' naming its reader function")
    cache_path = None
    if cache_dir is not None:
        name = str(target).rsplit(".", 1)[-1]
        cache_path = Path(cache_dir) / f"{name}-{cache_key_for(config, filters)}.npz"
        if cache_path.exists():
            log.info("dataset cache hit: %s", cache_path)
            return load_dataset(cache_path), cache_path
    dataset = resolve_reader(config)()
    dataset = apply_filters(dataset, filters)
    if cache_path is not None:
        save_dataset(dataset, cache_path)
        log.info("dataset cached: %s", cache_path)
    return dataset, cache_path
