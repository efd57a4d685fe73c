"""Federated against centralized training, communication, robustness and DP.

Every federated run goes through Flower's Simulation Runtime (``simulations.flower_sim``) with the
real ServerApp / ClientApp, one user per client and ``--fraction`` of the clients per round. The
central reference trains the same model on the same (non-held-out) users with early stopping, and
both are evaluated on the same held-out users (leave-one-out test target, full ranking).

Groups (``--groups``):

* ``accuracy``: central vs federated (dense) vs federated row-sparse (+int8); every federated row
  reports the last round and the round of best validation NDCG@10 (test NDCG@10 there);
* ``robustness``: 20% of clients crashing every round (against the same FedAdam run without); 10%
  Byzantine clients (updates scaled by -5) under FedAvg, FedMedian, Krum and MultiKrum, each against
  its clean run;
* ``dp``: NDCG@10 against epsilon for several noise multipliers.

    .venv/bin/python benchmarks/fl_vs_central.py --datasets synthetic --groups accuracy --rounds 100

Writes ``benchmarks/results/fl_vs_central.json`` (rows of other runs already there are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fl.server_app import best_round, read_rounds  # noqa: E402
from fl.settings import FederatedSettings  # noqa: E402
from fl.task import task_data  # noqa: E402
from ranking.evaluation import evaluate  # noqa: E402
from ranking.recommender import SequenceRecommender  # noqa: E402
from ranking.storage import save_dataset  # noqa: E402
from simulations.flower_sim import simulate  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

MACHINE = f"{platform.machine()}, {os.cpu_count()} cores"


def dataset_file(name: str, workdir: Path) -> Path:
    path = workdir / f"{name}.npz"
    if not path.exists():
        if name == "synthetic":
            from simulations.datasets.synthetic import generate_world

            save_dataset(generate_world().dataset, path)
        else:
            from simulations.datasets.recbole import read_recbole_atomic

            save_dataset(read_recbole_atomic(ROOT.parent / "shared" / "data" / "ml-100k"), path)
    return path


def central_row(name: str, settings: FederatedSettings) -> dict:
    data = task_data(settings)
    t0 = time.perf_counter()
    model = SequenceRecommender(
        settings.model,
        model={"hidden": settings.hidden, "n_blocks": settings.n_blocks},
        train={"max_len": settings.max_len, "progress": False, "seed": settings.seed},
    ).fit(data.train, validation=data.heldout)
    result = evaluate(model, data.heldout, "test", ks=(10,))
    return {
        "dataset": name,
        "method": "central",
        "setting": f"{settings.model}, early stopping",
        "hr@10": result["hr@10"],
        "ndcg@10": result["ndcg@10"],
        "rounds_or_epochs": model.best_epoch,
        "seconds": time.perf_counter() - t0,
    }


def federated_row(name: str, method: str, settings: FederatedSettings) -> dict:
    n_clients = task_data(settings).partition.n_clients
    t0 = time.perf_counter()
    simulate(settings, num_supernodes=n_clients)
    wall = time.perf_counter() - t0
    rows = read_rounds(Path(settings.run_dir))
    trained = [r for r in rows if r["round"] > 0]
    last = [r for r in rows if "ndcg@10" in r][-1]
    best = best_round(rows) or last
    updates = sum(r["accepted"] for r in trained)
    row = {
        "dataset": name,
        "method": method,
        "setting": f"{settings.strategy} eta {settings.eta:g}, E={settings.local_epochs}, "
        f"{settings.update_encoding}/{settings.quantize}"
        f"{f' +{settings.sparse_extra_rows} rows' if settings.update_encoding == 'row-sparse' else ''}, "
        f"{settings.num_rounds} rounds, {settings.fraction_train:.0%} of {n_clients} clients",
        "hr@10": last["hr@10"],
        "ndcg@10": last["ndcg@10"],
        "rounds_or_epochs": last["round"],
        # model selection as central early stopping does: the round with the best validation NDCG@10
        "best_round": best["round"],
        "hr@10_best_val": best["hr@10"],
        "ndcg@10_best_val": best["ndcg@10"],
        "bytes_per_round": sum(r["bytes_up"] for r in trained) / max(1, len(trained)),
        "bytes_down_per_round": sum(r["bytes_down"] for r in trained) / max(1, len(trained)),
        "client_updates_per_second": updates / max(1e-9, sum(r["seconds"] for r in trained)),
        "dropped": sum(r["dropped"] for r in trained),
        "rejected": sum(r["rejected"] for r in trained),
        "seconds": wall,
    }
    if "epsilon" in last:
        row["epsilon"] = last["epsilon"]
        row["delta"] = last["delta"]
    return row


def experiments(group: str, base: FederatedSettings) -> list[tuple[str, FederatedSettings]]:
    if group == "accuracy":
        return [
            ("federated dense", base),
            ("federated row-sparse", base.replace(update_encoding="row-sparse")),
            (
                "federated row-sparse int8",
                base.replace(update_encoding="row-sparse", quantize="int8"),
            ),
        ]
    if group == "robustness":
        byz = {"byzantine_fraction": 0.1, "byzantine_mode": "scale", "byzantine_factor": -5.0}
        n_sampled = base.sample_size(task_data(base).partition.n_clients)
        n_byzantine = round(0.1 * n_sampled)
        return [
            ("fedadam clean", base),
            ("fedadam 20% dropping", base.replace(drop_fraction=0.2)),
            ("fedavg clean", base.replace(strategy="fedavg")),
            ("fedavg 10% byzantine", base.replace(strategy="fedavg", **byz)),
            ("fedmedian 10% byzantine", base.replace(strategy="fedmedian", **byz)),
            ("fedmedian clean", base.replace(strategy="fedmedian")),
            (
                "krum 10% byzantine",
                base.replace(strategy="krum", num_malicious_nodes=n_byzantine, **byz),
            ),
            ("krum clean", base.replace(strategy="krum", num_malicious_nodes=n_byzantine)),
            (
                "multikrum 10% byzantine",
                base.replace(
                    strategy="multikrum",
                    num_malicious_nodes=n_byzantine,
                    num_nodes_to_select=n_sampled - 2 * n_byzantine,
                    **byz,
                ),
            ),
            (
                "multikrum clean",
                base.replace(
                    strategy="multikrum",
                    num_malicious_nodes=n_byzantine,
                    num_nodes_to_select=n_sampled - 2 * n_byzantine,
                ),
            ),
        ]
    if group == "dp":
        return [
            (
                f"dp noise {z}",
                base.replace(strategy="fedavg", dp_noise_multiplier=z, dp_clipping_norm=1.0),
            )
            for z in (0.3, 1.0, 3.0)
        ]
    raise SystemExit(f"unknown group {group!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic"])
    parser.add_argument("--groups", nargs="+", default=["accuracy"])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--no-central", action="store_true")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument(
        "--eta", type=float, default=FederatedSettings.eta, help="FedAdam server step size"
    )
    parser.add_argument(
        "--methods", nargs="*", default=None, help="run only these methods of the groups"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fl-bench-"))
    rows = []
    for name in args.datasets:
        base = FederatedSettings(
            data_path=str(dataset_file(name, workdir)),
            num_rounds=args.rounds,
            fraction_train=args.fraction,
            partition="one_user_per_client",
            eval_every=args.eval_every,
            eta=args.eta,
        )
        if not args.no_central:
            rows.append(central_row(name, base))
            print(rows[-1], flush=True)
        for group in args.groups:
            for method, settings in experiments(group, base):
                if args.methods and method not in args.methods:
                    continue
                run_dir = workdir / f"{name}-{method.replace(' ', '_').replace('%', 'pct')}"
                rows.append(federated_row(name, method, settings.replace(run_dir=str(run_dir))))
                rows[-1]["machine"] = MACHINE
                print(rows[-1], flush=True)
    cols = [
        "dataset",
        "method",
        "setting",
        "hr@10",
        "ndcg@10",
        "rounds_or_epochs",
        "ndcg@10_best_val",
        "best_round",
        "bytes_per_round",
        "client_updates_per_second",
        "epsilon",
        "seconds",
    ]
    print_table(
        "Federated vs central (held-out users, leave-one-out test, full ranking)", rows, cols
    )
    out = ROOT / "benchmarks" / "results" / "fl_vs_central.json"
    write_results(out, rows, key=("dataset", "method"))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
