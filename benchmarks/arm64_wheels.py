"""Can a Raspberry Pi 4/5 (64-bit Raspberry Pi OS bookworm: aarch64, glibc 2.36, Python 3.11)
install the client? Resolves the base install for that platform without installing anything.

``pip install --dry-run --report`` with ``--only-binary=:all:``, ``--python-version 3.11`` and every
``manylinux_2_17 .. manylinux_2_36`` aarch64 tag (what glibc 2.36 runs) resolves the base
dependencies of ``pyproject.toml`` (the device install) against the package index; every package must
come as an aarch64 (or pure-Python) wheel. Writes ``benchmarks/results/arm64_wheels.json``: one row
per resolved package with its wheel.

    python benchmarks/arm64_wheels.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GLIBC_MINOR = 36  # Raspberry Pi OS bookworm


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    platforms = [f"manylinux_2_{m}_aarch64" for m in range(17, GLIBC_MINOR + 1)]
    platforms.append("manylinux2014_aarch64")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        cmd += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
        cmd += ["--target", str(Path(tmp) / "target"), "--report", str(report)]
        for platform in platforms:
            cmd += ["--platform", platform]
        result = subprocess.run(cmd + deps, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout + result.stderr)
            print("the base install does NOT resolve for aarch64 / glibc 2.36")
            return 1
        resolved = json.loads(report.read_text())["install"]
    rows = []
    for item in resolved:
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1].split("#")[0]
        ok = wheel.endswith("-none-any.whl") or "aarch64" in wheel
        rows.append(
            {
                "dataset": "-",
                "method": item["metadata"]["name"],
                "setting": "aarch64, glibc 2.36, cp311",
                "version": item["metadata"]["version"],
                "wheel": wheel,
                "aarch64_ok": float(ok),
            }
        )
        print(f"{'ok ' if ok else 'NO '} {wheel}")
    out = ROOT / "benchmarks" / "results" / "arm64_wheels.json"
    out.write_text(
        json.dumps({"command": "python benchmarks/arm64_wheels.py", "rows": rows}, indent=2)
    )
    bad = [r["method"] for r in rows if not r["aarch64_ok"]]
    print(f"{len(rows)} packages resolved; {len(bad)} without an aarch64 wheel {bad or ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
