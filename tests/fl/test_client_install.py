"""The base install (a device's) covers exactly what the ClientApp and the device recommender import."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEVICE_MODULES = (
    "fl.client_app",
    "fl.device_model",
    "fl.device_rules",
    "fl.resident_supernode",
    "onnxruntime",
)
OPTIONAL_IMPORTS = {"sniffio"}
"""Imported only where installed, inside ``try: ... except ImportError`` (httpx does so); the client
install runs without it (benchmarks/edge_supernode.py runs tandem-supernode from such an install)."""
FRAMEWORK_ONLY = {"faiss-cpu", "open-clip-torch", "hydra-core", "wandb", "ray", "torchvision"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def closure(names: set[str]) -> set[str]:
    """The installed distributions that ``names`` need, with the extras their requirements ask
    for (``uvicorn[standard]``) and no others."""
    seen: set[tuple[str, str]] = set()
    todo = [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for raw in md.requires(name) or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            todo.extend((_name(raw), e) for e in ("", *sorted(req.extras)))
    return {name for name, _ in seen}


def imported_distributions() -> dict[str, set[str]]:
    """Each third-party top-level module the device side imports, with the distributions that
    provide it (a namespace such as ``google`` has several)."""
    probe = (
        "import sys, importlib\n"
        f"for m in {DEVICE_MODULES!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    top = set(out.stdout.split()) - set(sys.stdlib_module_names)
    owners = md.packages_distributions()
    found = {m: {_name(d) for d in owners.get(m, [])} for m in top}
    return {m: dists for m, dists in found.items() if dists and "tandem" not in dists}


def test_the_base_install_covers_the_device_imports_and_leaves_the_framework_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = closure({_name(r) for r in project["dependencies"]})
    imported = imported_distributions()
    uncovered = sorted(
        m for m, dists in imported.items() if not dists & base and m not in OPTIONAL_IMPORTS
    )
    assert imported and not uncovered, uncovered
    assert not (FRAMEWORK_ONLY & base), sorted(FRAMEWORK_ONLY & base)
    framework = {_name(r) for r in project["optional-dependencies"]["framework"]}
    assert FRAMEWORK_ONLY - {"ray"} <= framework
