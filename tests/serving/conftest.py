"""One tiny trained bundle (and a second version of it) shared by the service tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.serving.bundles import build_tiny_bundle


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``v1`` and ``v2`` (the same files under another version name) and ``corrupt`` (one byte
    of the L2 weights flipped)."""
    root = tmp_path_factory.mktemp("bundles")
    v1 = build_tiny_bundle(root / "v1", version="v1")
    v2 = root / "v2"
    shutil.copytree(v1, v2)
    manifest = json.loads((v2 / "manifest.json").read_text())
    manifest["meta"]["version"] = "v2"
    (v2 / "manifest.json").write_text(json.dumps(manifest))
    corrupt = root / "corrupt"
    shutil.copytree(v1, corrupt)
    weights = corrupt / "l2" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return {"v1": v1, "v2": v2, "corrupt": corrupt}
