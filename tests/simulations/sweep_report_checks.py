"""Checks of a report made from a real re-ranker sweep (used by the documented-sweep test)."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.report_cli import make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_rows(report: str, section: str) -> dict[str, list[str]]:
    """``{first cell: the other cells}`` of the Markdown table under ``## section``."""
    text = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[2:]}


def assert_reranker_sweep_report(sweep: Path, tmp_path: Path) -> None:
    """A real two-seed multirun of the re-ranker comparison (``experiment=rerankers seed=0,1``)
    becomes a report with a row per re-ranker over both seeds, each re-ranker's own latency, the
    explanations and the three figures."""
    jobs = sorted(sweep.glob("*/metrics.json"))
    assert len(jobs) == 2
    names = [r["reranker"] for r in json.loads(jobs[0].read_text())["rerankers"]]
    assert {"neural", "rules", "blend_mmr"} <= set(names)
    assert not list(sweep.glob("*/report.md"))  # a sweep's jobs leave the report to tandem-report

    report = make_report(sweep, tmp_path).read_text()

    assert "2 jobs (2 finished, 0 failed); seed: 0, 1" in report
    results = table_rows(report, "Results")
    for name in names:  # one row per re-ranker, over both seeds (n = 2, mean ± std)
        method, n, ndcg = results[name][:3]
        assert n == "2" and " ± " in ndcg and method in ("neural", "rules", "hybrid")
    latency = table_rows(report, "Latency")
    assert set(names) <= set(latency)  # each re-ranker's own re-rank stage
    assert "## Why these items" in report and "| # | item | L1 rank | L2 score |" in report
    for figure in ("frontier.png", "latency.png", "rounds.png"):
        assert (tmp_path / figure).read_bytes()[:8] == PNG_MAGIC
        assert f"]({figure})" in report
