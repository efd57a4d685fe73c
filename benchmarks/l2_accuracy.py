"""L2 accuracy and speed: every model on ML-100K and on the synthetic world.

Leave-one-out, full ranking over all items with seen items filtered, early stopping on validation
NDCG@10. Prints HR@10, NDCG@10, MRR@10 on the test targets, seconds per epoch, the best epoch and
the wall-clock time to it.

    .venv/bin/python benchmarks/l2_accuracy.py                       # everything
    .venv/bin/python benchmarks/l2_accuracy.py --datasets synthetic --models sasrec pop
    .venv/bin/python benchmarks/l2_accuracy.py --datasets ml-100k --models sasrec --no-filter-seen

``--no-filter-seen`` is RecBole's protocol (seen items stay candidates in validation and test).

Writes ``benchmarks/results/l2_accuracy.json`` (rows of other datasets/models already there are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ranking.baselines import ItemKNN, MostPopular  # noqa: E402
from ranking.data.splits import leave_one_out  # noqa: E402
from ranking.evaluation import evaluate  # noqa: E402
from ranking.recommender import SequenceRecommender  # noqa: E402
from simulations.report import print_table, write_results  # noqa: E402

MODELS = ["pop", "itemknn", "sasrec", "gru4rec", "lstm", "longshort"]
MACHINE = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def load(name: str):
    if name == "synthetic":
        from simulations.datasets.synthetic import generate_world

        return generate_world().dataset
    from simulations.datasets.recbole import read_recbole_atomic

    return read_recbole_atomic(ROOT.parent / "shared" / "data" / "ml-100k")


def make(name: str, args) -> object:
    if name == "pop":
        return MostPopular()
    if name == "itemknn":
        return ItemKNN()
    train = {
        "epochs": args.max_epochs,
        "patience": args.patience,
        "progress": False,
        "seed": args.seed,
        "max_len": args.max_len,
        "cover_history": not args.last_window_only,
        "validation_filter_seen": not args.no_filter_seen,
    }
    kind = {"gru4rec": "gru4rec", "lstm": "lstm", "sasrec": "sasrec", "longshort": "longshort"}[
        name
    ]
    model = {"session_encoder": "attention"} if kind == "longshort" else {}
    return SequenceRecommender(kind, model=model, train=train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic"])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument(
        "--last-window-only",
        action="store_true",
        help="the SASRec protocol: last max_len items only",
    )
    parser.add_argument(
        "--no-filter-seen",
        action="store_true",
        help="RecBole's protocol: seen items stay candidates, in validation (early stopping) and test",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for dataset_name in args.datasets:
        ds = load(dataset_name)
        split = leave_one_out(ds.interactions)
        for name in args.models:
            model = make(name, args)
            t0 = time.perf_counter()
            if isinstance(model, SequenceRecommender):
                model.fit(split.train, validation=split)
            else:
                model.fit(split.train)
            wall = time.perf_counter() - t0
            metrics = evaluate(model, split, "test", ks=(10,), filter_seen=not args.no_filter_seen)
            row = {
                "dataset": dataset_name,
                "method": name,
                "setting": "full ranking, seen "
                + ("not filtered" if args.no_filter_seen else "filtered")
                + (", last window" if args.last_window_only else ""),
                "hr@10": round(metrics["hr@10"], 4),
                "ndcg@10": round(metrics["ndcg@10"], 4),
                "mrr@10": round(metrics["mrr@10"], 4),
                "coverage@10": round(metrics["coverage@10"], 4),
                "fit_seconds": round(wall, 1),
                "machine": MACHINE,
            }
            if isinstance(model, SequenceRecommender):
                epochs = [h for h in model.history if "seconds" in h]
                per_epoch = sum(h["seconds"] for h in epochs) / max(1, len(epochs))
                best = model.best_epoch or len(epochs)
                to_best = sum(h["seconds"] + h.get("eval_seconds", 0.0) for h in epochs[:best])
                row.update(
                    {
                        "seconds_per_epoch": round(per_epoch, 2),
                        "epochs_run": len(epochs),
                        "best_epoch": best,
                        "seconds_to_best": round(to_best, 1),
                        "val_ndcg@10": round(model.best_metric or 0.0, 4),
                    }
                )
            rows.append(row)
            print(row, flush=True)
    cols = [
        "dataset",
        "method",
        "hr@10",
        "ndcg@10",
        "mrr@10",
        "seconds_per_epoch",
        "best_epoch",
        "seconds_to_best",
        "fit_seconds",
    ]
    print_table("L2 accuracy (leave-one-out, full ranking, test)", rows, cols)
    out = ROOT / "benchmarks" / "results" / "l2_accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
