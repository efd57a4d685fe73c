"""End-to-end latency of ``tandem-serve`` under open-loop load, with a blue-green swap under load.

Protocol
--------
1. A bundle is built once (cached under ``.cache/tandem/bench/``): the synthetic world enlarged to
   ``--n-items`` items (100,000) and ``--n-users`` users; L1 two-tower (ID item tower: encoding
   100k rendered images with CLIP is out of scope here) and L2 SASRec, each trained ``--epochs``
   epoch(s) with sampled softmax (256 negatives); HNSW32 index (efSearch 128); 100 candidates;
   A/B variants ``neural`` / ``blend`` (50/50), as ``conf/serving/default.yaml``.
2. The real server (``tandem-serve``, uvicorn, ``torch_threads=1``, one micro-batching worker thread) runs on
   127.0.0.1. The load generator is a separate process: an asyncio client over keep-alive
   HTTP/1.1 connections, sending ``POST /recommend`` (a user's last <= 20 items, k = 10) at fixed
   intervals (open loop: latency counts from the scheduled send time, so queueing is included).
   It reports its own CPU share: it runs on the same 2 cores as the server.
3. Each offered rate runs ``--duration`` seconds after a 2 s warm-up. The ``swap`` scenario runs at
   ``--swap-rate`` and, mid-run, swaps to a second bundle (``POST /admin/bundle``) and back
   (``POST /admin/rollback``); every failed request is counted.

Run::

    python benchmarks/serving_latency.py                  # the README's table (about 10 minutes)
    python benchmarks/serving_latency.py --smoke          # 2,000 items, short runs (a check)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "serving_latency.json"
TOKEN = "bench-token"


# ----------------------------------------------------------------------------- bundle


def build_bundle(path: Path, n_items: int, n_users: int, epochs: int) -> tuple[Path, Path]:
    """The benchmark bundle and the request sessions (cached)."""
    sessions = path.with_suffix(".sessions.json")
    if (path / "manifest.json").exists() and sessions.exists():
        return path, sessions
    from ranking.recommender import SequenceRecommender
    from ranking.two_tower import TwoTowerRetriever
    from serving.bundle import export_bundle
    from simulations.datasets.synthetic import synthetic_dataset

    t0 = time.perf_counter()
    dataset = synthetic_dataset(n_items=n_items, n_users=n_users, seed=0)
    log = dataset.interactions
    sampled = {"loss": "sampled", "n_negatives": 256, "epochs": epochs, "max_len": 50}
    retriever = TwoTowerRetriever(
        n_items=n_items,
        dim=64,
        train={**sampled, "progress": True},
        index={"factory": "HNSW32", "normalise": False, "ef_search": 128},
    ).fit(log)
    l2 = SequenceRecommender(
        "sasrec", model={"hidden": 64, "n_blocks": 2}, train={**sampled, "progress": True}
    ).fit(log)
    checkpoint = l2.save(path.parent / f"{path.name}-l2")
    export_bundle(
        path,
        retriever=retriever,
        l2_checkpoint=checkpoint,
        catalog=dataset.catalog,
        popularity=log.item_counts(),
        rerankers={
            "neural": {"name": "neural"},
            "blend": {"name": "blend", "weights": {"l2": 1.0, "popularity": 0.2}},
        },
        n_candidates=100,
        meta={"version": f"bench-{n_items}", "trained_epochs": epochs},
    )
    sequences = log.sequences()
    rng = np.random.default_rng(1)
    ids = dataset.catalog.ids
    picked = rng.choice(log.n_users, size=min(2000, log.n_users), replace=False)
    requests = [[str(ids[i]) for i in sequences[int(u)][-20:]] for u in picked]
    sessions.write_text(json.dumps([r for r in requests if r]))
    print(f"bundle built in {time.perf_counter() - t0:.0f}s: {path}", flush=True)
    return path, sessions


def second_version(bundle: Path) -> Path:
    """The same files under another version name (the swap's target)."""
    other = bundle.with_name(bundle.name + "-green")
    if not other.exists():
        shutil.copytree(bundle, other)
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["meta"]["version"] += "-green"
        (other / "manifest.json").write_text(json.dumps(manifest))
    return other


# ----------------------------------------------------------------------------- load generator


async def _post(pool: asyncio.Queue, host: str, port: int, body: bytes) -> tuple[int, dict | None]:
    reader, writer = await pool.get()
    try:
        if writer.is_closing():
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        payload = await reader.readexactly(length)
        status = int(status_line.split()[1])
        return status, json.loads(payload) if status == 200 else None
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        return 0, None
    finally:
        pool.put_nowait((reader, writer))


async def _generate(url: str, rate: float, duration: float, sessions: list, warmup: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    rng = np.random.default_rng(0)
    results: list[tuple[float, float, int, dict | None]] = []

    async def one(scheduled: float, body: bytes) -> None:
        status, payload = await _post(pool, host, int(port), body)
        results.append((scheduled, time.perf_counter() - scheduled, status, payload))

    tasks = []
    start = time.perf_counter() + 0.1
    n = int((duration + warmup) * rate)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        session = sessions[int(rng.integers(len(sessions)))]
        body = json.dumps({"user": f"bench-{i % 5000}", "session": session, "k": 10}).encode()
        tasks.append(asyncio.create_task(one(scheduled, body)))
    await asyncio.gather(*tasks)
    measured = [r for r in results if r[0] >= start + warmup]
    ok = [r for r in measured if r[2] == 200]
    ms = np.array([r[1] * 1e3 for r in ok]) if ok else np.array([np.nan])
    span = max(r[0] + r[1] for r in measured) - (start + warmup)
    stages = {}
    for stage in ("l1", "l2", "rerank", "total", "http"):
        vals = np.array([r[3]["timings_ms"][stage] for r in ok])
        stages[f"{stage}_mean_ms"] = float(vals.mean()) if len(vals) else float("nan")
        stages[f"{stage}_p99_ms"] = float(np.percentile(vals, 99)) if len(vals) else float("nan")
    versions: dict[str, int] = {}
    for r in ok:
        versions[r[3]["model_version"]] = versions.get(r[3]["model_version"], 0) + 1
    return {
        "requests": len(measured),
        "failed": len(measured) - len(ok),
        "rps_served": len(ok) / span if span > 0 else 0.0,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "versions": versions,
        **stages,
    }


def loadgen_main(args: argparse.Namespace) -> None:
    sessions = json.loads(Path(args.sessions).read_text())
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out = asyncio.run(_generate(args.url, args.rate, args.duration, sessions, args.warmup))
    out["loadgen_cpu_share"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    print(json.dumps(out), flush=True)


def run_load(url: str, rate: float, duration: float, sessions: Path, warmup: float = 2.0):
    """Start the load generator as its own process; returns it (read its stdout for the row)."""
    return subprocess.Popen(
        [sys.executable, __file__, "--loadgen", url, "--rate", str(rate)]
        + ["--duration", str(duration), "--sessions", str(sessions), "--warmup", str(warmup)],
        stdout=subprocess.PIPE,
        text=True,
    )


# ----------------------------------------------------------------------------- driver


def start_server(bundle: Path, state: Path) -> tuple[subprocess.Popen, str]:
    from tests.processes import free_port  # noqa: PLC0415 (the tests' helper, not shipped)

    port = free_port()
    log = open(state / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "--bundle", str(bundle), f"port={port}"]
        + [f"event_log={state / 'events.log'}", f"admin_token={TOKEN}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(state / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("server not ready in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-items", type=int, default=100_000)
    parser.add_argument("--n-users", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rates", default="50,100,200,300,400,500,700")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--swap-rate", type=float, default=200.0)
    parser.add_argument("--smoke", action="store_true", help="2,000 items, short runs")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--loadgen", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        args.url = args.loadgen
        loadgen_main(args)
        return
    if args.smoke:
        args.n_items, args.n_users, args.rates, args.duration = 2000, 500, "20,50", 2.0
        args.swap_rate = 50.0
    cache = ROOT / ".cache" / "tandem" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    bundle, sessions = build_bundle(
        cache / f"serving-{args.n_items}-e{args.epochs}", args.n_items, args.n_users, args.epochs
    )
    green = second_version(bundle)
    state = Path(tempfile.mkdtemp(prefix="tandem-serving-bench-"))
    proc, url = start_server(bundle, state)
    import httpx

    rows = []
    setting = (
        f"{os.cpu_count()} cores, torch_threads=1, 1 batching worker (max 32), k=10, 100 candidates"
    )
    method = "tandem-serve: HNSW32 L1 -> SASRec L2 -> A/B neural|blend"
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            gen = run_load(url, rate, args.duration, sessions)
            out = json.loads(gen.communicate()[0])
            rows.append(
                {
                    "dataset": f"synthetic-{args.n_items}",
                    "method": method,
                    "setting": setting,
                    "scenario": "steady",
                    "n_items": args.n_items,
                    "rps_offered": rate,
                    **{k: v for k, v in out.items() if k != "versions"},
                }
            )
            print(f"{rate:6.0f} rps offered: {json.dumps(rows[-1])}", flush=True)
        gen = run_load(url, args.swap_rate, args.duration, sessions)
        time.sleep(2.0 + args.duration / 3)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        swap = httpx.post(
            f"{url}/admin/bundle", json={"path": str(green)}, headers=headers, timeout=300
        )
        time.sleep(args.duration / 3)
        back = httpx.post(f"{url}/admin/rollback", headers=headers, timeout=60)
        out = json.loads(gen.communicate()[0])
        versions = out.pop("versions")
        rows.append(
            {
                "dataset": f"synthetic-{args.n_items}",
                "method": method,
                "setting": setting,
                "scenario": "swap",
                "n_items": args.n_items,
                "rps_offered": args.swap_rate,
                "swap_status": swap.status_code,
                "rollback_status": back.status_code,
                "served_by_green": versions.get(json.loads(swap.text)["serving"]["version"], 0)
                if swap.status_code == 200
                else 0,
                **out,
            }
        )
        print(f"swap under load: {json.dumps(rows[-1])}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print_table(rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")


def print_table(rows: list[dict]) -> None:
    cols = [
        "scenario",
        "rps_offered",
        "rps_served",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "failed",
        "l1_mean_ms",
        "l2_mean_ms",
        "rerank_mean_ms",
        "total_mean_ms",
        "loadgen_cpu_share",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
