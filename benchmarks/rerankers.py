"""Hybrid re-rankers against neural-only and rules-only: the comparison tandem exists for.

Reads one or more Hydra multirun directories of the re-ranker comparison (every job a pipeline run
with the ``rerankers`` of ``conf/config.yaml``: the same L1 candidates and federated L2 scores
re-ranked by each), aggregates every re-ranker over seeds (mean and 95% t-interval), decides which
hybrids dominate the baselines, and writes ``benchmarks/results/rerankers.json``: one row per
dataset x re-ranker x setting with ``ndcg@10``, ``hr@10``, ``ild@10``, ``coverage@10``,
``novelty@10``, ``p99_ms`` (means), ``ndcg@10_ci``, ``ild@10_ci`` (95% half-widths), ``seeds`` and
``violations`` (share of lists breaking a hard rule configured in any compared re-ranker).

Dominance (the issue's definition): A dominates B when A is at least as good on NDCG@10 and ILD@10
and better on one, an NDCG@10 inside the other's interval counting as equal.

    .venv/bin/tandem-simulate -m experiment=rerankers seed=0,1,2 hydra.sweep.dir=runs/rerankers-synthetic
    .venv/bin/python benchmarks/rerankers.py runs/rerankers-synthetic --dataset synthetic
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulations.report import (  # noqa: E402
    Stat,
    dominates,
    print_table,
    read_sweep,
    skipped_rules,
    summarize,
    write_results,
)

METRICS = (
    "ndcg@10",
    "hr@10",
    "ild@10",
    "coverage@10",
    "novelty@10",
    "calibration_kl@10",
    "p99_ms",
    "violations",
)


def rows_of(stats: list[Stat], dataset: str, setting: str) -> list[dict]:
    rows = []
    for stat in stats:
        row: dict = {"dataset": dataset, "method": f"{stat.kind}:{stat.name}", "setting": setting}
        row.update({m: round(stat.mean[m], 4) for m in METRICS if m in stat.mean})
        row.update(
            {f"{m}_ci": round(stat.ci.get(m, float("nan")), 4) for m in ("ndcg@10", "ild@10")}
        )
        row["seeds"] = stat.n
        rows.append(row)
    return rows


def dominance(stats: list[Stat]) -> list[str]:
    baselines = {s.kind: s for s in stats if s.kind in ("neural", "rules")}
    lines = []
    for stat in stats:
        if not stat.is_hybrid:
            continue
        beaten = [k for k, b in baselines.items() if dominates(stat, b)]
        lines.append(f"{stat.name}: dominates {', '.join(beaten) if beaten else 'no baseline'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+", help="multirun directories")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument(
        "--setting", default="federated SASRec L2, top 10 of 100, 30% users held out"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "rerankers.json"
    )
    args = parser.parse_args()
    jobs = [job for sweep in args.sweeps for job in read_sweep(sweep)]
    stats = summarize(jobs)
    rows = rows_of(stats, args.dataset, args.setting)
    skipped = skipped_rules(jobs)
    for row in rows:
        row["skipped_rules"] = skipped.get(row["method"].split(":", 1)[1], "")
    print_table(f"re-rankers on {args.dataset} (mean over seeds, 95% CI half-widths)", rows)
    for line in dominance(stats):
        print(line)
    for name, why in sorted(skipped.items()):
        print(f"{name} skipped {why}")
    write_results(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
