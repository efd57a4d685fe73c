"""On-device inference without torch: a small recommender over an exported model directory.

A federated run's best model is exported (:func:`fl.device_export.export_device_model`) as a
directory that is delivered to devices **as a file** (copied or downloaded; not in-band over
Flower)::

    <device model>/
        manifest.json     {"format": "tandem-device-model", "spec": {"max_len", "top_k",
                           "models": {"fp32": ..., "int8": ...}}, "n_items", "files": {sha256...},
                           "meta": {"version", "round", ...}}
        model.onnx        the scorer (session in, top-k item ids and scores out), fp32
        model.int8.onnx   the same with an int8 item table and int8 MatMuls
        item_ids.json     the catalog's external item ids, by dense id

:class:`DeviceRecommender` needs numpy and onnxruntime only (this module imports no torch). It
checks the manifest (format, every checksum) and that the model, the manifest and the item map
agree, and refuses a model of another version than the one it expects: a mismatched or corrupt
model never answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking.errors import DataError
from ranking.manifest import read_manifest

DEVICE_FORMAT = "tandem-device-model"
DEVICE_FORMAT_VERSION = 1


class DeviceRecommender:
    """Next items for a session from the local history, with onnxruntime alone."""

    def __init__(
        self,
        path: str | Path,
        *,
        precision: str = "int8",
        expected_version: str | None = None,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        manifest = read_manifest(self.path, DEVICE_FORMAT, DEVICE_FORMAT_VERSION)
        meta = manifest.meta or {}
        self.version = str(meta.get("version", ""))
        if expected_version is not None and self.version != expected_version:
            raise DataError(
                f"device model version {self.version!r}, expected {expected_version!r}",
                path=self.path,
            )
        models = dict(manifest.spec.get("models", {}))
        if precision not in models:
            raise DataError(f"no {precision!r} model; it has {sorted(models)}", path=self.path)
        self.item_ids = list(json.loads((self.path / "item_ids.json").read_text()))
        self.index_of = {item: n for n, item in enumerate(self.item_ids)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path / models[precision]), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own error types
            raise DataError(f"not a loadable ONNX model ({exc})", path=self.path) from exc
        embedded = {  # the exporter's metadata: one JSON value per "tandem.<key>" property
            key.removeprefix("tandem."): json.loads(value)
            for key, value in self.session.get_modelmeta().custom_metadata_map.items()
            if key.startswith("tandem.")
        }
        self.max_len = int(manifest.spec["max_len"])
        self.top_k = int(manifest.spec["top_k"])
        n_items = int(manifest.n_items or 0)
        if (
            not (len(self.item_ids) == n_items == int(embedded.get("n_items", -1)))
            or int(embedded.get("max_len", -1)) != self.max_len
        ):
            raise DataError(
                f"model, manifest and item map disagree: {embedded.get('n_items')} / {n_items} / "
                f"{len(self.item_ids)} items, max_len {embedded.get('max_len')} / {self.max_len}",
                path=self.path,
            )

    def recommend(self, history: Sequence[str], k: int | None = None) -> list[tuple[str, float]]:
        """Up to ``k`` (at most the model's top-k) ``(item id, score)`` pairs, best first."""
        k = self.top_k if k is None else k
        if not 1 <= k <= self.top_k:
            raise ValueError(f"k must lie in 1..{self.top_k}, got {k}")
        unknown = [item for item in history if item not in self.index_of]
        if unknown:
            raise KeyError(f"items not in this model's catalog: {unknown[:5]}")
        ids = [self.index_of[item] + 1 for item in history][-self.max_len :]  # 0 = padding
        x = np.zeros((1, self.max_len), dtype=np.int64)
        if ids:
            x[0, -len(ids) :] = ids
        scores, items = self.session.run(None, {"inputs": x})
        return [
            (self.item_ids[int(i)], float(s))
            for i, s in zip(items[0][:k], scores[0][:k], strict=True)
        ]
