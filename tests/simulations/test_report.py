"""Sweep reports: a hand-written multirun directory becomes a Markdown table of means over seeds,
PNG figures, and the dominance of hybrids over baselines; broken inputs give clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ranking.errors import DataError
from simulations.report import Stat, dominates, pareto_front, read_sweep, summarize
from simulations.report_cli import main, make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (ndcg@10, ild@10) per re-ranker and seed
SCORES = {
    "neural": [(0.30, 0.20), (0.32, 0.22)],
    "rules": [(0.25, 0.40), (0.27, 0.42)],
    "blend_mmr": [(0.31, 0.45), (0.29, 0.47)],
}
METHODS = {"neural": "neural", "rules": "rules", "blend_mmr": "hybrid"}
RERANK_MS = {"neural": 0.0, "rules": 0.5, "blend_mmr": 2.0}
"""Each re-ranker's own p99 of the re-rank stage (seed 0; seed 1 adds 1 ms)."""
EXPLANATIONS = {
    "reranker": "blend_mmr",
    "history": [4, 8, 15],
    "lines": [
        "#0 item 42: L1 rank 3; L2 0.512; score 0.61 = l2 0.5 + popularity 0.11 (0.55x0.2)",
        "#1 item 7: L1 rank 0; L2 0.9; score 0.9; score rank 0; "
        "mmr: chosen over item 5 (similarity 0.8)",
        "#2 item 99: not an L1 candidate; score n/a; pin: pinned at position 2",
    ],
    "skipped": {},
}


def write_job(
    path: Path, overrides: list[str], metrics: dict[str, Any] | None, rounds=None
) -> None:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    if rounds is not None:
        (path / "fl").mkdir()
        (path / "fl" / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))


def pipeline_metrics(seed: int) -> dict[str, Any]:
    rerankers = [
        {
            "reranker": name,
            "method": METHODS[name],
            "ndcg@10": s[seed][0],
            "hr@10": 0.5,
            "ild@10": s[seed][1],
            "violations": 0,
            "rerank_p99_ms": RERANK_MS[name] + seed,
            "p99_ms": 7.0 + RERANK_MS[name] + seed,
            "skipped_rules": "freshness: no created_at" if name == "blend_mmr" else "",
        }
        for name, s in SCORES.items()
    ]
    return {
        "config": {"seed": seed},
        "dataset": {"users": 10},
        "results": [{"system": "two-tier (L1 top 100 -> L2)", "ndcg@10": 0.3}],
        "rerankers": rerankers,
        "latency": {
            "l1_p99_ms": 2.0 + seed,
            "l2_p99_ms": 4.0,
            "rerank_p99_ms": 0.0,  # the two-tier requests have no third stage
            "total_p99_ms": 7.0,
        },
        "explanations": EXPLANATIONS if seed == 0 else {},
    }


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun"
    for seed in (0, 1):
        rounds = [
            {"round": r, "ndcg@10": 0.1 * r + seed / 100, "val_ndcg@10": 0.1 * r} for r in (0, 1, 2)
        ]
        write_job(
            root / str(seed), [f"seed={seed}", "mode=pipeline"], pipeline_metrics(seed), rounds
        )
    write_job(root / "2", ["seed=2", "mode=pipeline"], None)  # failed: no metrics.json
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def table_row(report: str, name: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_has_means_over_seeds_figures_and_dominance(sweep, tmp_path):
    out = tmp_path / "out"
    report_path = make_report(sweep, out)
    report = report_path.read_text()
    assert report_path == out / "report.md"
    header = table_row(report, "result")
    assert header[:4] == ["result", "method", "n", "ndcg@10"] and "ild@10" in header
    row = dict(zip(header, table_row(report, "blend_mmr"), strict=True))
    # mean 0.30, sample std 0.0141, 95% CI half-width t(0.975, 1) * 0.0141 / sqrt(2) = 0.1271
    assert row["ndcg@10"] == "0.3000 ± 0.0141 (±0.1271)"
    assert row["ild@10"].startswith("0.4600 ± 0.0141") and (row["n"], row["method"]) == (
        "2",
        "hybrid",
    )
    neural = dict(zip(header, table_row(report, "neural"), strict=True))
    assert neural["ndcg@10"].startswith("0.3100 ±")
    assert "3 jobs (2 finished, 1 failed)" in report and "`mode=pipeline`" in report
    assert "- `2` (seed=2 mode=pipeline): no metrics.json" in report
    # blend_mmr's NDCG@10 lies inside the baselines' CIs and its ILD@10 is higher: it beats both
    assert "- `blend_mmr` dominates `neural`, `rules` (of `neural`, `rules`)" in report
    assert "Pareto-optimal: `blend_mmr`." in report
    # a rule that the dataset could not support is named, with its reason, for its re-ranker only
    skipped = report.split("## Rules skipped on this dataset", 1)[1].split("##", 1)[0]
    assert skipped.strip() == "- `blend_mmr`: freshness: no created_at"
    # p99 per stage and re-ranker: L1 and L2 shared, each re-ranker's own re-rank stage and total
    latency = report.split("## Latency", 1)[1].split("##", 1)[0]
    assert "| re-ranker | l1 | l2 | rerank | total |" in latency
    assert (
        "| neural | 2.5000 ± 0.7071 | 4.0000 ± 0 | 0.5000 ± 0.7071 | 7.5000 ± 0.7071 |" in latency
    )
    assert "| blend_mmr | 2.5000 ± 0.7071 | 4.0000 ± 0 | 2.5000 ± 0.7071 | 9.5000 ± 0.7071 |" in (
        latency
    )
    assert "| two-tier" not in latency  # re-rankers were timed: no row without a re-rank stage
    # why these items: the job's example list, one row per item with its L1 rank and L2 score
    why = report.split("## Why these items", 1)[1].split("\n## ", 1)[0]
    assert "**`blend_mmr`** (job `0`, seed=0), a held-out user whose last items" in why
    assert "| 0 | 42 | 3 | 0.512 | score 0.61 = l2 0.5 + popularity 0.11 (0.55x0.2) |" in why
    assert "| 1 | 7 | 0 | 0.9 | score 0.9; score rank 0; mmr: chosen over item 5" in why
    assert "| 2 | 99 | not an L1 candidate |  | score n/a; pin: pinned at position 2 |" in why
    for name in ("frontier.png", "latency.png", "rounds.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in report
    assert not (sweep / "report.md").exists()


def test_a_run_without_rerankers_shows_its_two_tier_latency_without_a_rerank_stage(tmp_path):
    metrics = pipeline_metrics(0)
    del metrics["rerankers"], metrics["explanations"]
    write_job(tmp_path / "0", ["seed=0"], metrics)
    report = make_report(tmp_path, show_table=False).read_text()
    assert "| re-ranker | l1 | l2 | total |" in report  # no third stage ran: no "rerank 0"
    assert "| two-tier (no re-ranker) | 2.0000 | 4.0000 | 7.0000 |" in report
    assert "## Why these items" not in report
    assert "# Run report" in report and "1 job (1 finished, 0 failed)" in report


def test_malformed_explanations_are_a_data_error_naming_the_file(sweep):
    bad = sweep / "0" / "metrics.json"
    bad.write_text(json.dumps(pipeline_metrics(0) | {"explanations": {"lines": [1, 2]}}))
    with pytest.raises(DataError, match=r"0/metrics\.json.*'explanations' must be an object"):
        read_sweep(sweep)


def test_summaries_group_by_swept_overrides_and_fall_back_to_results(tmp_path):
    root = tmp_path / "central"
    for i, (model, seed) in enumerate([("pop", 0), ("pop", 1), ("itemknn", 0), ("itemknn", 1)]):
        results = [{"dataset": "d", "model": model, "ndcg@10": 0.1 * (i + 1), "n_users": 80}]
        write_job(root / str(i), [f"model={model}", f"seed={seed}"], {"results": results})
    stats = summarize(read_sweep(root))
    assert [(s.name, s.setting, s.n) for s in stats] == [
        ("pop", (("model", "pop"),), 2),
        ("itemknn", (("model", "itemknn"),), 2),
    ]
    assert stats[0].mean["ndcg@10"] == pytest.approx(0.15)
    assert stats[1].mean["ndcg@10"] == pytest.approx(0.35)
    assert "n_users" not in stats[0].mean
    assert main([str(root)]) == 0
    report = (root / "report.md").read_text()
    assert "| result | model | n | ndcg@10 |" in report
    assert "## Accuracy and diversity" not in report  # no ILD@10 in central results


def stat(
    name: str, ndcg: float, ild: float | None, ci: float = math.nan, method: str | None = None
) -> Stat:
    mean = {"ndcg@10": ndcg} | ({} if ild is None else {"ild@10": ild})
    return Stat(name, method, n=3, mean=mean, ci={"ndcg@10": ci, "ild@10": math.nan})


def test_dominates():
    better = stat("a", 0.40, 0.50)
    worse = stat("b", 0.30, 0.40)
    assert dominates(better, worse) and not dominates(worse, better)
    assert not dominates(better, stat("same", 0.40, 0.50))  # equal on both: better on neither
    assert dominates(stat("a", 0.40, 0.50), stat("b", 0.40, 0.40))  # tie on NDCG, more diverse
    # lower NDCG@10, but inside the other's 95% interval: counts as equal, and ILD@10 is higher
    assert dominates(stat("a", 0.29, 0.50), stat("b", 0.30, 0.40, ci=0.02))
    assert dominates(stat("a", 0.29, 0.50, ci=0.02), stat("b", 0.30, 0.40))  # either interval
    assert not dominates(stat("a", 0.27, 0.50), stat("b", 0.30, 0.40, ci=0.02))  # outside it
    assert not dominates(stat("a", 0.30, 0.30), stat("b", 0.29, 0.40, ci=0.02))  # less diverse
    assert not dominates(stat("a", 0.50, None), worse)  # no ILD@10: no claim
    front = pareto_front([better, worse, stat("c", 0.20, 0.90), stat("d", 0.5, None)])
    assert [s.name for s in front] == ["a", "c"]


def test_hybrid_is_any_method_but_the_baselines():
    assert stat("blend", 0, 0, method="hybrid").is_hybrid
    assert stat("mmr_then_rules", 0, 0).is_hybrid
    assert not stat("neural", 0, 0).is_hybrid and not stat("x", 0, 0, method="rules").is_hybrid


def test_malformed_metrics_is_a_data_error_naming_the_file(sweep, capsys):
    bad = sweep / "1" / "metrics.json"
    bad.write_text('{"rerankers": [')
    with pytest.raises(DataError, match=r"1/metrics\.json.*not valid JSON"):
        read_sweep(sweep)
    assert main([str(sweep)]) == 1
    assert str(bad) in capsys.readouterr().err
    bad.write_text(json.dumps({"rerankers": [{"ndcg@10": 0.3}]}))
    with pytest.raises(DataError, match=r"metrics\.json: rerankers\[0\] names no result"):
        read_sweep(sweep)
    bad.write_text(json.dumps({"dataset": {}}))
    with pytest.raises(DataError, match="holds no 'rerankers', 'results' or 'rounds' list"):
        read_sweep(sweep)


def test_bad_overrides_and_empty_directories_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="holds no Hydra job"):
        read_sweep(tmp_path)
    with pytest.raises(DataError, match="is not a directory"):
        read_sweep(tmp_path / "missing")
    write_job(tmp_path / "0", ["seed=0"], {"results": []})
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("seed: 0\n")
    with pytest.raises(DataError, match=r"overrides\.yaml: expected a list of Hydra overrides"):
        read_sweep(tmp_path)


def test_a_sweep_where_every_job_failed_is_reported_and_exits_non_zero(tmp_path, capsys):
    for seed in (0, 1):
        write_job(tmp_path / str(seed), [f"seed={seed}"], None)
    assert main([str(tmp_path)]) == 1
    assert "no job finished" in capsys.readouterr().err
    report = (tmp_path / "report.md").read_text()
    assert "2 jobs (0 finished, 2 failed)" in report and "- `1` (seed=1): no metrics.json" in report
