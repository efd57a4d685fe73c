"""Re-ranking latency alone: 100 candidates to a top 10, for every re-ranker of ``conf/reranker/``.

Protocol: a catalog of 100,000 items (20 categories, a price band, 95% available, creation times),
random unit item vectors of dimension 512 (the size of OpenCLIP ViT-B-32's), popularity from a
Zipf law; each request has 100 distinct random candidates with normal L2 scores and a history of
20 items. One thread (numpy/BLAS pinned before import). Each re-ranker answers 200 warm-up
requests, then 2,000 timed ones; a request's time includes building its context
(``RerankContext.for_request``) and the explanations. The issue's targets: p99 <= 1 ms for a rule
stack without a diversifier (MMR or calibration), <= 3 ms with one.

    .venv/bin/python benchmarks/rerank_latency.py

Writes ``benchmarks/results/rerank_latency.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ranking.data.catalog import Catalog  # noqa: E402
from ranking.hybrid import RerankContext, build_reranker  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

DIVERSIFIERS = ("mmr", "calibration", "dpp")
K = 10


def random_catalog(n_items: int, rng: np.random.Generator) -> Catalog:
    bands = np.array(["budget", "standard", "premium", "luxury"])
    return Catalog(
        ids=np.arange(n_items).astype(str),
        text=np.array([f"item {i}" for i in range(n_items)]),
        category=rng.integers(0, 20, n_items),
        category_names=tuple(f"category {c}" for c in range(20)),
        attributes={"price_band": bands[rng.integers(0, 4, n_items)]},
        available=rng.random(n_items) < 0.95,
        created_at=rng.uniform(0, 90 * 86400, n_items),
    )


def has_diversifier(spec: dict) -> bool:
    return any(rule.get("name") in DIVERSIFIERS for rule in spec.get("rules") or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    catalog = random_catalog(args.items, rng)
    vectors = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    popularity = rng.zipf(1.5, args.items).astype(np.float64)
    context = RerankContext.from_catalog(catalog, popularity=popularity, item_vectors=vectors, k=K)
    n = 200 + args.requests
    candidates = np.stack([rng.choice(args.items, 100, replace=False) for _ in range(n)])
    scores = rng.normal(size=(n, 100)).astype(np.float32)
    histories = rng.integers(0, args.items, (n, 20))
    rows = []
    for path in sorted((ROOT / "conf" / "reranker").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        reranker = build_reranker(spec)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            reranker(candidates[i], scores[i], context.for_request(histories[i], K))
            times.append(time.perf_counter() - t0)
        ms = np.array(times[200:]) * 1e3
        diversifier = has_diversifier(spec)
        rows.append(
            {
                "dataset": f"random catalog, {args.items} items, d {args.dim}",
                "method": f"{spec['name']}:{path.stem}",
                "setting": f"100 candidates -> top {K}, 1 thread, {args.requests} requests",
                "diversifier": "yes" if diversifier else "no",
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "target_p99_ms": 3.0 if diversifier else 1.0,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            }
        )
    print_table(
        "re-ranking latency (ms per request)",
        rows,
        ["method", "diversifier", "p50_ms", "p99_ms", "target_p99_ms"],
    )
    out = ROOT / "benchmarks" / "results" / "rerank_latency.json"
    write_results(out, rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
