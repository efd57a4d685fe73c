"""L1 retrieval: recall@100, latency, throughput, build time and size of Flat, HNSW and IVF-PQ.

Item vectors are drawn from a clustered Gaussian mixture (Zipf-sized clusters, anisotropic noise
with a decaying spectrum, so the intrinsic dimension is well below ``d`` as with learned
embeddings) and L2-normalised; 1,000 held-out queries come from the same mixture. Recall@100 is
measured against exact inner-product search.

    .venv/bin/python benchmarks/l1_retrieval.py                        # 100k items, d = 64 and 256
    .venv/bin/python benchmarks/l1_retrieval.py --sizes 1000000        # 1M items
    .venv/bin/python benchmarks/l1_retrieval.py --sizes 100000 --dims 64 --methods hnsw

Single-query latency (p50/p99) runs one query at a time with 1 thread; QPS is one batched
search over all queries with all threads. Memory is the size of the serialised index.
Rows are merged into ``benchmarks/results/l1_retrieval.json`` (same dataset/method/setting
replaced) and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ranking.retrieval.faiss_index import FaissIndex  # noqa: E402
from ranking.retrieval.ground_truth import exact_topk, recall_at_k  # noqa: E402

K = 100
METHODS = {
    # name: (factory, constructor settings, swept setting name, swept values)
    "flat": ("Flat", {}, None, [None]),
    "hnsw": ("HNSW32", {"ef_construction": 200}, "ef_search", [128, 256, 512]),
    "ivfpq": ("IVF1024,PQ16", {}, "nprobe", [16, 64]),
}


def gaussian_mixture(
    n: int, d: int, centres: np.ndarray, rng: np.random.Generator, chunk: int = 100_000
) -> np.ndarray:
    """``n`` L2-normalised points from the mixture around ``centres`` (float32 ``[n, d]``)."""
    n_clusters = centres.shape[0]
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8  # Zipf-like cluster sizes
    weights /= weights.sum()
    spread = np.random.default_rng(1).uniform(0.5, 1.1, n_clusters).astype(np.float32)
    spectrum = 1.0 / np.sqrt(np.arange(1, d + 1, dtype=np.float32))  # std of noise direction j
    spectrum /= np.sqrt((spectrum**2).sum())  # E|noise|^2 = 1
    rotation, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((d, d)))
    basis = (spectrum[:, None] * rotation.T).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cluster = rng.choice(n_clusters, size=m, p=weights)
        noise = rng.standard_normal((m, d), dtype=np.float32) @ basis
        x = centres[cluster] + spread[cluster, None] * noise
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_data(n: int, d: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_clusters = max(16, int(np.sqrt(n)))
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    items = gaussian_mixture(n, d, centres, rng)
    queries = gaussian_mixture(n_queries, d, centres, np.random.default_rng(seed + 1))
    return items, queries


def index_bytes(index: FaissIndex) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        index.save(path)
        return path.stat().st_size


def latencies_ms(index: FaissIndex, queries: np.ndarray) -> np.ndarray:
    """Per-query wall time of ``index.search(query, K)`` with one thread."""
    for q in queries[:10]:  # warm up
        index.search(q[None], K)
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        index.search(q[None], K)
        out[i] = time.perf_counter() - t0
    return out * 1000


def run(
    n: int, d: int, methods: list[str], n_queries: int, n_latency: int, threads: int, seed: int
) -> list[dict]:
    dataset = f"gmm-{n // 1000}k-d{d}" if n < 1_000_000 else f"gmm-{n // 1_000_000}m-d{d}"
    t0 = time.perf_counter()
    items, queries = make_data(n, d, n_queries, seed)
    faiss.omp_set_num_threads(threads)
    _, truth = exact_topk(items, queries, K)
    print(f"[{dataset}] data + ground truth: {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []
    for name in methods:
        factory, settings, knob, values = METHODS[name]
        faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        index = FaissIndex(d, factory, normalise=False, **settings)  # items are normalised already
        index.build(items)
        build_s = time.perf_counter() - t0
        memory_mb = index_bytes(index) / 2**20
        for value in values:
            if knob is not None:
                setattr(index, knob, value)
            faiss.omp_set_num_threads(threads)
            index.search(queries[:50], K)  # warm up
            t0 = time.perf_counter()
            _, found = index.search(queries, K)
            qps = len(queries) / (time.perf_counter() - t0)
            faiss.omp_set_num_threads(1)
            lat = latencies_ms(index, queries[:n_latency])
            row = {
                "dataset": dataset,
                "method": factory,
                "setting": "exact" if knob is None else f"{knob}={value}",
                f"recall@{K}": round(recall_at_k(found, truth), 4),
                "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3),
                "qps": round(qps, 1),
                "build_seconds": round(build_s, 2),
                "memory_mb": round(memory_mb, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        del index
    flat = next((r for r in rows if r["method"] == "Flat"), None)
    if flat is not None:
        for r in rows:
            r["p99_speedup_vs_flat"] = round(flat["p99_ms"] / r["p99_ms"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="numbers of items")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--latency-queries", type=int, default=None, help="queries timed one by one (default: all)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "l1_retrieval.json"
    )
    args = parser.parse_args()
    n_latency = args.latency_queries or args.queries

    rows: list[dict] = []
    for n in args.sizes:
        for d in args.dims:
            rows.extend(run(n, d, args.methods, args.queries, n_latency, args.threads, args.seed))

    from simulations.report import print_table, write_results

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads for QPS"
    print_table(f"L1 retrieval: top-{K} over {args.queries} queries ({machine})", rows)

    write_results(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
