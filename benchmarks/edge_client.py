"""What the device side costs: imports, and on-device inference with onnxruntime alone.

Protocol: each import is timed in a fresh interpreter (``python -X importtime`` is not used: wall
time of ``import <module>``, median of 3), listing the heavy third-party packages it loads. The
device model is SASRec (hidden 64, 2 blocks, max_len 50) over the synthetic world's 2,000 items,
trained 1 epoch (latency does not depend on the weights), exported by ``fl.device_export`` and
served by ``fl.device_model.DeviceRecommender`` (onnxruntime, 1 thread, batch 1) for 2,000 requests
of a random history of 1-50 items, pinned to one core with ``taskset`` when available.

    python benchmarks/edge_client.py          # writes benchmarks/results/edge_client.json
    python benchmarks/edge_client.py --client-venv ~/tandem-client   # adds install sizes

``--client-venv`` names an environment holding the client install (``pip install .`` without
extras, CPU torch); its size on disk is compared with this (full) environment's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HEAVY = (
    "torch",
    "flwr",
    "faiss",
    "open_clip",
    "hydra",
    "wandb",
    "ray",
    "torchvision",
    "onnxruntime",
)
MODULES = {
    "device recommender (fl.device_model)": "fl.device_model",
    "Flower ClientApp (fl.client_app)": "fl.client_app",
    "full framework (simulations.run)": "simulations.run",
}


def import_cost(module: str) -> tuple[float, list[str]]:
    probe = (
        "import sys, time; t = time.perf_counter(); import importlib; "
        f"importlib.import_module({module!r}); print(time.perf_counter() - t); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split("\n")
        runs.append((float(out[0]), [m for m in out[1].split(",") if m]))
    return statistics.median(r[0] for r in runs), runs[0][1]


def size_mb(path: str | Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-venv", help="a venv with the client install: adds install sizes")
    parser.add_argument("--pinned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("taskset") and not args.pinned:
        os.execvp(
            "taskset", ["taskset", "-c", "0", sys.executable, __file__, "--pinned", *sys.argv[1:]]
        )
    rows = []
    if args.client_venv:
        client = args.client_venv
        for name, env in (
            ("client install (base, CPU torch)", client),
            ("full install", sys.prefix),
        ):
            rows.append(
                {
                    "dataset": "-",
                    "method": name,
                    "setting": "du -sm of the venv",
                    "install_mb": size_mb(env),
                }
            )
            print(rows[-1], flush=True)
    for name, module in MODULES.items():
        seconds, loaded = import_cost(module)
        rows.append(
            {
                "dataset": "-",
                "method": name,
                "setting": "fresh interpreter, median of 3",
                "import_seconds": seconds,
                "heavy_packages": " ".join(loaded) or "none",
            }
        )
        print(rows[-1], flush=True)

    from fl.device_export import export_device_model
    from fl.device_model import DeviceRecommender
    from ranking.recommender import SequenceRecommender
    from simulations.datasets.synthetic import synthetic_dataset

    dataset = synthetic_dataset(seed=0)
    model = SequenceRecommender(
        "sasrec",
        model={"hidden": 64, "n_blocks": 2},
        train={"epochs": 1, "max_len": 50, "loss": "sampled", "progress": False},
    ).fit(dataset.interactions)
    work = Path(tempfile.mkdtemp())
    path = export_device_model(model.save(work / "ckpt"), dataset.catalog.ids, work / "device")
    rng = np.random.default_rng(0)
    ids = list(dataset.catalog.ids)
    for precision, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        device = DeviceRecommender(path, precision=precision)
        times = []
        for _ in range(2000):
            history = [ids[i] for i in rng.integers(0, len(ids), size=int(rng.integers(1, 51)))]
            t0 = time.perf_counter()
            device.recommend(history)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "dataset": "synthetic-2000",
                "method": f"DeviceRecommender onnxruntime {precision}",
                "setting": "1 core, 1 thread, batch 1, top-10, SASRec h64 x2, max_len 50",
                "p50_ms": float(np.percentile(times, 50)),
                "p99_ms": float(np.percentile(times, 99)),
                "model_mb": (path / file).stat().st_size / 1e6,
            }
        )
        print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "edge_client.json"
    out.write_text(
        json.dumps({"command": "python benchmarks/edge_client.py", "rows": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
