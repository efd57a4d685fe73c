"""The one manifest format of tandem's artefacts (checkpoints, serving bundles, device models).

A directory holds its files and ``manifest.json``: a format name and version, a spec, the sha256 of
every file, the item count and free metadata. :func:`read_manifest` checks the format and every
checksum, so a corrupt, partial or foreign directory is refused with a :class:`DataError` naming the
file. This module imports no torch: an edge device reads manifests with numpy and onnxruntime only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoders.storage import sha256_file
from ranking.errors import DataError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """What a manifest says: format and version, model spec, files with their sha256, metadata."""

    format: str
    format_version: int
    spec: dict[str, Any]
    files: dict[str, str]
    n_items: int | None = None
    meta: dict[str, Any] | None = None


def write_manifest(
    directory: Path,
    *,
    format: str,
    format_version: int,
    spec: Mapping[str, Any],
    n_items: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Manifest:
    """Checksum every file in ``directory`` and write ``manifest.json`` beside them."""
    files = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = Manifest(format, format_version, dict(spec), files, n_items, dict(meta or {}))
    (directory / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2, default=float))
    return manifest


def read_manifest(directory: str | Path, format: str, format_version: int) -> Manifest:
    """The manifest of ``directory`` after checking its format and every file's checksum."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise DataError(f"not a {format} directory (expected {MANIFEST} inside)", path=directory)
    try:
        raw = json.loads(path.read_text())
        manifest = Manifest(**raw)
    except FileNotFoundError:
        raise DataError(f"no {MANIFEST}: not a {format} or a partial one", path=directory) from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(f"unreadable manifest ({exc})", path=path) from exc
    if manifest.format != format or manifest.format_version != format_version:
        raise DataError(
            f"format {manifest.format!r} version {manifest.format_version}; expected {format!r} "
            f"version {format_version}",
            path=path,
        )
    for name, digest in manifest.files.items():
        file = directory / name
        if not file.is_file():
            raise DataError(f"file {name!r} listed in the manifest is missing", path=directory)
        if sha256_file(file) != digest:
            raise DataError(f"checksum mismatch for {name!r}: corrupt or partly written", path=file)
    return manifest
