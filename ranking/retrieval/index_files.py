"""The on-disk form of a FAISS index: the FAISS file plus a JSON sidecar of its settings.

Both files are written to a temporary file in the same directory and renamed into place, so a
failed save never leaves a partial file behind. Reading checks the sidecar against the index
file (format version, byte size, dimension, vector count, metric).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss

from ranking.errors import DataError
from ranking.retrieval.faiss_internals import faiss_message
from ranking.storage import atomic_path, atomic_write_text

__all__ = ["FORMAT_VERSION", "metadata_path", "read_index", "write_index"]

FORMAT_VERSION = 1


def metadata_path(path: str | Path) -> Path:
    """The JSON sidecar stored next to the index file ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_index(index: faiss.Index, settings: dict[str, Any], path: str | Path) -> None:
    """Write ``index`` to ``path`` (FAISS format) and ``settings`` to ``<path>.json``, atomically.

    The sidecar holds ``format_version``, then ``settings``, then ``index_bytes`` (the size of
    the index file).

    Raises
    ------
    DataError
        If either file cannot be written.
    """
    path = Path(path)
    meta: dict[str, Any] = {"format_version": FORMAT_VERSION, **settings}
    try:
        with atomic_path(path) as tmp:
            faiss.write_index(index, str(tmp))
            meta["index_bytes"] = tmp.stat().st_size
        atomic_write_text(metadata_path(path), json.dumps(meta, indent=2) + "\n")
    except (RuntimeError, OSError) as exc:
        msg = faiss_message(exc) if isinstance(exc, RuntimeError) else str(exc)
        raise DataError(f"could not save the index ({msg})", path=path) from exc


def read_index(path: str | Path) -> tuple[faiss.Index, dict[str, Any]]:
    """Read an index written by :func:`write_index`, with its sidecar settings.

    Raises
    ------
    DataError
        If the index file or its ``.json`` sidecar is missing, unreadable or inconsistent.
    """
    path = Path(path)
    meta_path = metadata_path(path)
    if not path.is_file():
        raise DataError("index file does not exist", path=path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise DataError("index metadata sidecar does not exist", path=meta_path) from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"index metadata is not valid JSON ({exc})", path=meta_path) from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise DataError(f"index metadata format {version!r} != {FORMAT_VERSION}", path=meta_path)
    missing = {"factory", "dim", "normalise", "ntotal", "index_bytes"} - set(meta)
    if missing:
        raise DataError(f"index metadata lacks {sorted(missing)}", path=meta_path)
    size = os.path.getsize(path)
    if size != meta["index_bytes"]:
        raise DataError(
            f"index file has {size} bytes but its metadata says {meta['index_bytes']} "
            "(truncated, or not the file the metadata was written with)",
            path=path,
        )
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise DataError(f"not a readable FAISS index ({faiss_message(exc)})", path=path) from exc
    if index.d != meta["dim"] or index.ntotal != meta["ntotal"]:
        raise DataError(
            f"index holds {index.ntotal} vectors of dim {index.d}, metadata says "
            f"{meta['ntotal']} of dim {meta['dim']}",
            path=path,
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise DataError("index does not use the inner-product metric", path=path)
    return index, meta
