"""On-device export: model file size and single-inference latency of the exported SASRec scorer.

SASRec with the default config (hidden 64, 2 blocks, 1 head, max_len 50) on a 2,000-item and a
3,706-item (MovieLens-1M size) catalog, exported by :mod:`ranking.export` as the on-device scorer
(left-padded ``[1, 50]`` history in, top-10 items out) and timed for

* PyTorch eager (``OnDeviceScorer`` under ``torch.inference_mode``; size: the ``state_dict`` file),
* TorchScript and TorchScript int8 (``torch.jit.load``),
* ONNX Runtime and ONNX Runtime int8 (CPU execution provider).

Latency is one request (batch 1) at a time on one thread (``torch.set_num_threads(1)``, ORT
``intra_op_num_threads=1``): p50/p99 over ``--runs`` timed calls after ``--warmup`` untimed ones,
on random histories of 1..50 items, the methods interleaved call by call (so background load hits
them alike; p99 on a shared machine is mostly scheduler preemption). Weights are random (size and latency do not depend on them);
``top1_agree`` is the share of 500 random histories whose top-1 item matches PyTorch eager;
``cpu_isa`` names the instruction set the int8 kernels ran on (agreement differs between CPUs).

    .venv/bin/python benchmarks/export_bench.py
    .venv/bin/python benchmarks/export_bench.py --sizes 3706 --runs 1000

Rows are merged into ``benchmarks/results/export_bench.json`` (same dataset/method/setting
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ranking.export import (  # noqa: E402
    OnDeviceScorer,
    export_onnx,
    export_torchscript,
    load_torchscript,
    onnx_session,
    quantize_onnx,
)
from ranking.models import build_model  # noqa: E402

MAX_LEN, HIDDEN, N_BLOCKS, TOP_K = 50, 64, 2, 10


def cpu_isa() -> str:
    """The widest x86 SIMD extension the CPU reports: int8 kernels (onnxruntime, PyTorch) are
    picked by it, so int8 agreement is recorded per instruction set."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return platform.machine()
    for isa in ("avx512_vnni", "avx512f", "avx_vnni", "avx2", "avx"):
        if isa in flags:
            return isa
    return platform.machine()


def histories(n: int, n_items: int, seed: int) -> np.ndarray:
    """``n`` left-padded ``[1, MAX_LEN]`` rows with 1..MAX_LEN random items each."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, MAX_LEN), dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(1, MAX_LEN + 1))
        out[i, 0, MAX_LEN - length :] = rng.integers(1, n_items + 1, size=length)
    return out


def latencies_ms(
    calls: dict[str, Callable[[np.ndarray], np.ndarray]], inputs: np.ndarray, warmup: int
) -> dict[str, np.ndarray]:
    """Per-call wall time of every method, interleaved (each input goes through every method in
    turn) so that a busy machine slows all methods alike."""
    for x in inputs[:warmup]:
        for call in calls.values():
            call(x)
    out = {name: np.empty(len(inputs)) for name in calls}
    for i, x in enumerate(inputs):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call(x)
            out[name][i] = time.perf_counter() - t0
    return {name: t * 1000 for name, t in out.items()}


def run(n_items: int, runs: int, warmup: int, seed: int, workdir: Path) -> list[dict]:
    dataset = f"catalog-{n_items}" + (" (ML-1M size)" if n_items == 3706 else "")
    setting = (
        f"sasrec h{HIDDEN} b{N_BLOCKS} L{MAX_LEN}, top-{TOP_K}, batch 1, 1 thread, {cpu_isa()}"
    )
    torch.manual_seed(seed)
    net = build_model("sasrec", n_items, hidden=HIDDEN, n_blocks=N_BLOCKS, max_len=MAX_LEN).eval()
    eager = OnDeviceScorer(net, TOP_K).eval()

    t0 = time.perf_counter()
    state = workdir / f"sasrec-{n_items}.state.pt"
    torch.save(net.state_dict(), state)
    ts = export_torchscript(net, workdir / f"sasrec-{n_items}.pt", max_len=MAX_LEN, top_k=TOP_K)
    ts8 = export_torchscript(
        net, workdir / f"sasrec-{n_items}-int8.pt", max_len=MAX_LEN, top_k=TOP_K, quantize_int8=True
    )
    ox = export_onnx(net, workdir / f"sasrec-{n_items}.onnx", max_len=MAX_LEN, top_k=TOP_K)
    ox8 = quantize_onnx(ox, workdir / f"sasrec-{n_items}-int8.onnx")
    print(f"[{dataset}] exports: {time.perf_counter() - t0:.1f}s", flush=True)

    def torch_call(module: Callable) -> Callable[[np.ndarray], np.ndarray]:
        def call(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x))[1].numpy()

        return call

    def ort_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
        session = onnx_session(path, threads=1)
        return lambda x: session.run(["item_ids"], {"inputs": x})[0]

    methods = {
        "pytorch-eager": (state, torch_call(eager)),
        "torchscript": (ts, torch_call(load_torchscript(ts))),
        "torchscript-int8": (ts8, torch_call(load_torchscript(ts8))),
        "onnxruntime": (ox, ort_call(ox)),
        "onnxruntime-int8": (ox8, ort_call(ox8)),
    }
    timed = histories(runs, n_items, seed + 1)
    check = histories(500, n_items, seed + 2).reshape(500, MAX_LEN)
    reference = methods["pytorch-eager"][1](check)[:, 0]
    lats = latencies_ms({name: call for name, (_, call) in methods.items()}, timed, warmup)
    rows = []
    for method, (path, call) in methods.items():
        lat = lats[method]
        row = {
            "dataset": dataset,
            "method": method,
            "setting": setting,
            "size_mb": round(path.stat().st_size / 2**20, 3),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "top1_agree": round(float((call(check)[:, 0] == reference).mean()), 3),
            "cpu_isa": cpu_isa(),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 3706], help="catalog sizes")
    parser.add_argument("--runs", type=int, default=500, help="timed single inferences (>= 200)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_bench.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in args.sizes:
            rows.extend(run(n_items, args.runs, args.warmup, args.seed, Path(tmp)))

    from simulations.report import print_table, write_results

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__.split('+')[0]}"
    )
    print_table(f"On-device export: SASRec scorer, size and batch-1 latency ({machine})", rows)

    write_results(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
