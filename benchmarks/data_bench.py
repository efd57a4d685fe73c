"""Time and peak memory to generate the synthetic world and to load ML-100K.

Each case runs in its own process so that its peak resident memory is its own.

    .venv/bin/python benchmarks/data_bench.py                # all cases
    .venv/bin/python benchmarks/data_bench.py --case synthetic-100k

Writes ``benchmarks/results/data_bench.json`` (a list of flat rows) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES: dict[str, dict] = {
    "synthetic-100k": {"kind": "synthetic", "n_items": 100_000, "n_users": 20_000},
    "synthetic-1m": {
        "kind": "synthetic",
        "n_items": 1_000_000,
        "n_users": 100_000,
        "n_categories": 20,
        "n_colours": 12,
        "n_patterns": 8,
    },
    "ml-100k-recbole": {
        "kind": "recbole",
        "directory": str(ROOT.parent / "shared" / "data" / "ml-100k"),
    },
}


def run_case(name: str) -> dict:
    """Run one case in this process and return its row."""
    spec = dict(CASES[name])
    kind = spec.pop("kind")
    t0 = time.perf_counter()
    if kind == "synthetic":
        from simulations.datasets.synthetic import generate_world

        dataset = generate_world(**spec).dataset
        # Images are drawn lazily; time drawing 1,000 of them as well.
        t_img = time.perf_counter()
        for i in range(1000):
            dataset.catalog.image(i)
        images_ms = (time.perf_counter() - t_img) * 1000 / 1000
    else:
        from simulations.datasets.recbole import read_recbole_atomic

        dataset = read_recbole_atomic(spec["directory"])
        images_ms = None
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = dataset.summary()
    return {
        "dataset": name,
        "method": "generate" if kind == "synthetic" else "read",
        "setting": f"{s['items']} items",
        "items": s["items"],
        "users": s["users"],
        "interactions": s["interactions"],
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
        **({"ms_per_image": round(images_ms, 3)} if images_ms is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.case or list(CASES)
    if args.child:
        print(json.dumps(run_case(names[0])))
        return
    rows = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--case", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"case {name} failed:\n{proc.stderr}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["machine"] = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
        rows.append(row)
    from simulations.report import print_table

    print_table("Data: generation and loading", rows)
    out = ROOT / "benchmarks" / "results" / "data_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
