"""A serving bundle: everything the service needs to answer requests, in one verified directory.

A training or simulation run exports one (``tandem-simulate`` writes ``<run dir>/bundle``), and the
service loads it, swaps to another one (blue-green) or rolls back::

    <bundle>/
        manifest.json     {"format": "tandem-bundle", "format_version": 1, "spec": {...},
                           "n_items", "files": {<path>: <sha256>, ...}, "meta": {"version", ...}}
        catalog.npz       external item ids, text, categories, availability, creation times,
                          attributes (no pickles)
        popularity.npy    training counts per item (popularity rules, the new-user fallback)
        item_vectors.npy  CLIP item vectors for diversity rules (optional)
        l1/towers.pt      the two-tower L1's weights (with the content vectors its item tower fuses)
        l1/index.faiss    the FAISS index over its item vectors (+ index.faiss.json, its settings)
        l2/               the L2 session model: a checkpoint directory (ranking.checkpoint)

The manifest is the one format checkpoints use (:func:`ranking.checkpoint.write_manifest`): every
file's sha256 is checked on load, so a corrupt or partial bundle is refused with a
:class:`~ranking.errors.DataError` that names the file. Bundles are written into a temporary
directory and renamed into place. The spec names only tandem's own parts, each built through its
registry (sequence models, re-rankers, rules) or from plain settings (the index): loading a bundle
never imports code it names.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.storage import atomic_directory, config_key
from ranking.data import Catalog
from ranking.errors import ConfigError, DataError
from ranking.hybrid import Reranker, build_reranker
from ranking.manifest import read_manifest, write_manifest
from ranking.pipeline import TwoTierPipeline
from ranking.recommender import SequenceRecommender, load_recommender
from ranking.retrieval import FaissIndex
from ranking.rules import RerankContext
from ranking.two_tower import TwoTowerRetriever
from ranking.typed_config import check_keys

__all__ = ["BUNDLE_FORMAT", "Bundle", "export_bundle", "load_bundle"]

BUNDLE_FORMAT = "tandem-bundle"
BUNDLE_FORMAT_VERSION = 1
SPEC_KEYS = frozenset({"l1", "rerankers", "n_candidates", "category_names", "l2"})
L1_KEYS = frozenset({"n_items", "use_id", "dim", "session_model", "model", "fusion", "train"})
INDEX = "l1/index.faiss"


def _catalog_arrays(catalog: Catalog) -> dict[str, np.ndarray]:
    arrays = {
        "ids": np.asarray(catalog.ids, dtype=str),
        "text": np.asarray(catalog.text, dtype=str),
        "category": np.asarray(catalog.category, dtype=np.int32),
        "available": np.asarray(catalog.available, dtype=bool),
        "created_at": np.asarray(catalog.created_at, dtype=np.float64),
    }
    for name, column in catalog.attributes.items():
        column = np.asarray(column)
        arrays[f"attr.{name}"] = column.astype(str) if column.dtype == object else column
    return arrays


def export_bundle(
    path: str | Path,
    *,
    retriever: TwoTowerRetriever,
    l2_checkpoint: str | Path | None,
    catalog: Catalog,
    popularity: np.ndarray,
    rerankers: Mapping[str, Mapping[str, Any]],
    n_candidates: int = 100,
    item_vectors: np.ndarray | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle directory atomically and return its path.

    ``rerankers`` maps a name to a re-ranker spec (``conf/reranker/*.yaml``): the service's A/B
    variants choose among them. ``meta["version"]`` names the model version; without it the
    version is derived from the files' checksums.
    """
    path = Path(path)
    if retriever.index is None:
        raise ConfigError("the retriever has no index: fit() or load() it before exporting")
    for spec in rerankers.values():
        build_reranker(spec)  # refuse a bad spec now, not when the service loads the bundle
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.shape != (catalog.n_items,):
        raise ConfigError(f"popularity must hold {catalog.n_items} counts, got {popularity.shape}")
    with atomic_directory(path) as tmp:
        (tmp / "l1").mkdir()
        np.savez(tmp / "catalog.npz", **_catalog_arrays(catalog))
        np.save(tmp / "popularity.npy", popularity)
        if item_vectors is not None:
            np.save(tmp / "item_vectors.npy", np.asarray(item_vectors, dtype=np.float32))
        retriever.save(tmp / "l1" / "towers.pt")
        retriever.index.save(tmp / INDEX)
        if l2_checkpoint is not None:
            shutil.copytree(l2_checkpoint, tmp / "l2")
        spec = {
            "l1": retriever.settings,
            "rerankers": {str(k): dict(v) for k, v in rerankers.items()},
            "n_candidates": int(n_candidates),
            "category_names": list(catalog.category_names),
            "l2": "l2" if l2_checkpoint is not None else None,
        }
        meta = dict(meta or {})
        manifest = write_manifest(
            tmp,
            format=BUNDLE_FORMAT,
            format_version=BUNDLE_FORMAT_VERSION,
            spec=spec,
            n_items=catalog.n_items,
            meta={"created": time.time(), **meta},
        )
        if "version" not in meta:
            version = config_key(manifest.files, length=12)
            write_manifest(
                tmp,
                format=BUNDLE_FORMAT,
                format_version=BUNDLE_FORMAT_VERSION,
                spec=spec,
                n_items=catalog.n_items,
                meta={**(manifest.meta or {}), "version": version},
            )
    return path


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the two-tier pipeline, its re-rankers and the catalog's id map."""

    path: Path
    version: str
    pipeline: TwoTierPipeline
    rerankers: dict[str, Reranker]
    context: RerankContext
    item_ids: np.ndarray
    index_of: dict[str, int]
    popularity: np.ndarray
    available: np.ndarray
    meta: dict[str, Any]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def pipeline_for(self, reranker: str | None) -> TwoTierPipeline:
        """The pipeline whose third stage is the named re-ranker (``None``: L2 order only)."""
        if reranker is None:
            return self.pipeline
        if reranker not in self.rerankers:
            raise ConfigError(
                f"bundle {self.path} has no re-ranker {reranker!r}; it has {sorted(self.rerankers)}"
            )
        return self.pipeline.with_reranker(self.rerankers[reranker], self.context)

    def popular(self, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """The ``k`` most popular available items (the new-user fallback), most popular first."""
        counts = np.where(self.available, self.popularity, -np.inf)
        if exclude is not None and len(exclude):
            counts[exclude] = -np.inf
        order = np.argsort(-counts, kind="stable")[:k]
        return order[np.isfinite(counts[order])]


def _load_catalog(path: Path, category_names: list[str]) -> Catalog:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return Catalog(
            ids=arrays["ids"],
            text=arrays["text"],
            category=arrays["category"],
            category_names=tuple(category_names),
            attributes={k[5:]: v for k, v in arrays.items() if k.startswith("attr.")},
            available=arrays["available"],
            created_at=arrays["created_at"],
        )
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"unreadable bundle catalog ({exc})", path=path) from exc


def _content_vectors(towers: Path) -> dict[str, np.ndarray]:
    """The content vectors stored with the towers (buffers of the item tower's fusion)."""
    try:
        state = torch.load(towers, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"not a readable two-tower state ({exc})", path=towers) from exc
    prefix = "item_emb.fusion."
    return {
        name: state[f"{prefix}{name}_vectors"].numpy()
        for name in ("text", "image")
        if f"{prefix}{name}_vectors" in state
    }


def load_bundle(path: str | Path, *, num_threads: int | None = None) -> Bundle:
    """Read and verify a bundle (see the module docstring); ready to serve, index warm."""
    path = Path(path)
    manifest = read_manifest(path, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION)
    where = f"{path / 'manifest.json'}: spec"
    spec = manifest.spec
    try:
        check_keys(spec, SPEC_KEYS, where)
        check_keys(spec["l1"], L1_KEYS, f"{where}.l1")
        content = _content_vectors(path / "l1" / "towers.pt")
        catalog = _load_catalog(path / "catalog.npz", list(spec["category_names"]))
        index = FaissIndex.load(path / INDEX, num_threads=num_threads)
        retriever = TwoTowerRetriever(**spec["l1"], **content, index=None)
        retriever.load_towers(path / "l1" / "towers.pt", index)
        l2: SequenceRecommender | None = None
        if spec["l2"] is not None:
            l2 = load_recommender(path / str(spec["l2"]))
        rerankers = {str(k): build_reranker(v) for k, v in dict(spec["rerankers"]).items()}
        popularity = np.load(path / "popularity.npy", allow_pickle=False)
        vectors_file = path / "item_vectors.npy"
        vectors = np.load(vectors_file, allow_pickle=False) if vectors_file.exists() else None
    except ConfigError as exc:
        raise DataError(f"invalid bundle spec: {exc}", path=path / "manifest.json") from exc
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise DataError(f"incomplete or unreadable bundle ({exc!r})", path=path) from exc
    if l2 is not None and l2.n_items not in (None, catalog.n_items):
        raise DataError(f"L2 model has {l2.n_items} items, catalog {catalog.n_items}", path=path)
    context = RerankContext.from_catalog(catalog, popularity=popularity, item_vectors=vectors)
    pipeline = TwoTierPipeline(retriever, l2, int(spec["n_candidates"]))
    meta = dict(manifest.meta or {})
    return Bundle(
        path=path,
        version=str(meta.get("version", "unversioned")),
        pipeline=pipeline,
        rerankers=rerankers,
        context=context,
        item_ids=catalog.ids,
        index_of={str(item): i for i, item in enumerate(catalog.ids)},
        popularity=popularity,
        available=np.asarray(catalog.available, dtype=bool),
        meta=meta,
    )


def describe(bundle: Bundle) -> dict[str, Any]:
    """What ``GET /admin/bundle`` and the logs say about a bundle."""
    return {
        "path": str(bundle.path),
        "version": bundle.version,
        "n_items": bundle.n_items,
        "rerankers": sorted(bundle.rerankers),
        "meta": json.loads(json.dumps(bundle.meta, default=str)),
    }
