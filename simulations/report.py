"""Result tables: the one way runs, sweeps and benchmarks show rows of metrics.

Also the statistics of the sweep report behind ``tandem-report`` (reading the jobs lives in
:mod:`simulations.report_jobs`, the Markdown and the command in :mod:`simulations.report_cli`,
the figures in :mod:`simulations.report_figures`): :func:`summarize` aggregates each result over
seeds (grouped by its name and by every swept override but ``seed``), :func:`dominates` compares
two results on accuracy and diversity, :func:`pareto_front` keeps the undominated ones and
:func:`latency_rows` gathers the p99 latency of every pipeline stage, per re-ranker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from simulations.report_jobs import Job, Result, Setting, setting_of, swept_keys
from simulations.report_jobs import read_sweep as read_sweep  # re-exported: benchmarks read sweeps
from simulations.report_jobs import skipped_rules as skipped_rules  # re-exported, as read_sweep


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def rows_table(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> Table:
    """A rich table over ``rows`` (the union of their keys, in first-seen order, unless given)."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    table = Table(title=title)
    for col in columns:
        numeric = any(isinstance(r.get(col), int | float) for r in rows)
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(format_value(row.get(col, "")) for col in columns))
    return table


def print_table(
    title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Print ``rows`` as a table on stdout (wide enough for metric columns even when piped)."""
    Console(width=200).print(rows_table(title, rows, columns))


def write_results(
    path: Path,
    rows: Sequence[dict[str, Any]],
    key: Sequence[str] = ("dataset", "method", "setting"),
) -> None:
    """Write benchmark ``rows`` to ``path`` (atomically), keeping earlier rows whose ``key`` differs."""
    from encoders.storage import atomic_write_text

    fresh = {tuple(r.get(c) for c in key) for r in rows}
    old: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = [
                r for r in json.loads(path.read_text()) if tuple(r.get(c) for c in key) not in fresh
            ]
        except (ValueError, TypeError, AttributeError):
            old = []
    atomic_write_text(path, json.dumps([*old, *rows], indent=2) + "\n")


# --- sweep statistics (``tandem-report``: simulations/report_cli.py) ---

ACCURACY = "ndcg@10"
DIVERSITY = "ild@10"
BASELINES = frozenset({"neural", "rules"})
"""Baseline re-ranker methods; any other method (or one starting with "hybrid") is a hybrid."""
METRIC_ORDER = (
    ACCURACY,
    "hr@10",
    DIVERSITY,
    "coverage@10",
    "novelty@10",
    "gini@10",
    "tail_share@10",
    "calibration_kl@10",
    "violations",
    "p99_ms",
)
"""Metric columns shown first, in this order (any other numeric result follows)."""
STAGES = ("l1", "l2", "rerank", "total")
"""The stages of a request, in order (``<stage>_p99_ms`` in a job's ``latency``)."""
TWO_TIER = "two-tier (no re-ranker)"
"""The latency row of a job whose results are not re-rankers."""


@dataclass
class Stat:
    """A result aggregated over seeds: mean, sample std and 95% CI half-width (t) per metric."""

    name: str
    method: str | None = None
    setting: Setting = ()
    n: int = 1
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    ci: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The method when the row names one, else the name (lower case)."""
        return str(self.method or self.name).lower()

    @property
    def is_hybrid(self) -> bool:
        """Whether this is a hybrid re-ranker: any kind but the :data:`BASELINES`."""
        return self.kind.startswith("hybrid") or self.kind not in BASELINES


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, sample std, CI half-width)``, the half-width ``t * std / sqrt(n)`` (NaN for n=1)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), 0.0, math.nan
    std = float(x.std(ddof=1))
    return (
        float(x.mean()),
        std,
        float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * std / math.sqrt(len(x))),
    )


def summarize(jobs: Sequence[Job], ignore: Sequence[str] = ("seed",)) -> list[Stat]:
    """Aggregate every result over seeds: one :class:`Stat` per (result name, swept setting)."""
    keys = swept_keys(jobs, ignore)
    groups: dict[tuple[str, Setting], list[Result]] = {}
    for job in jobs:
        for result in job.results:
            groups.setdefault((result.name, setting_of(job, keys)), []).append(result)
    out = []
    for (name, setting), results in groups.items():
        stat = Stat(
            name, next((r.method for r in results if r.method), None), setting, len(results)
        )
        for metric in dict.fromkeys(m for r in results for m in r.metrics):
            values = [r.metrics[metric] for r in results if metric in r.metrics]
            stat.mean[metric], stat.std[metric], stat.ci[metric] = mean_ci(values)
        out.append(stat)
    return out


def dominates(a: Stat, b: Stat, accuracy: str = ACCURACY, diversity: str = DIVERSITY) -> bool:
    """Whether ``a`` is at least as good as ``b`` on accuracy and diversity and better on one.

    Accuracies count as equal when one mean lies inside the other's 95% confidence interval
    (``|a - b| <= max(ci_a, ci_b)``; a result of one seed has no interval); diversity compares the
    means. A result without both metrics dominates nothing and is dominated by nothing.
    """
    try:
        a_acc, b_acc, a_div, b_div = (
            a.mean[accuracy],
            b.mean[accuracy],
            a.mean[diversity],
            b.mean[diversity],
        )
    except KeyError:
        return False
    widths = [
        w for w in (a.ci.get(accuracy), b.ci.get(accuracy)) if w is not None and math.isfinite(w)
    ]
    acc = 0 if abs(a_acc - b_acc) <= max(widths, default=0.0) else (1 if a_acc > b_acc else -1)
    div = (a_div > b_div) - (a_div < b_div)
    return acc >= 0 and div >= 0 and (acc > 0 or div > 0)


def by_setting(stats: Sequence[Stat]) -> dict[Setting, list[Stat]]:
    """The results of each swept setting (comparisons only make sense inside one)."""
    groups: dict[Setting, list[Stat]] = {}
    for stat in stats:
        groups.setdefault(stat.setting, []).append(stat)
    return groups


def pareto_front(stats: Sequence[Stat]) -> list[Stat]:
    """The results with both metrics that no other result :func:`dominates` (pass one setting)."""
    scored = [s for s in stats if ACCURACY in s.mean and DIVERSITY in s.mean]
    return [s for s in scored if not any(dominates(o, s) for o in scored if o is not s)]


def setting_label(setting: Setting) -> str:
    """``"key=value, ..."``, or ``"all jobs"`` when nothing but the seed was swept."""
    return ", ".join(f"{k}={v}" for k, v in setting) or "all jobs"


LatencyKey = tuple[Setting, str]
"""A row of the latency table: a swept setting and a re-ranker (or :data:`TWO_TIER`)."""


def _stage_latency(job: Job, result: Result | None) -> dict[str, float]:
    """p99 milliseconds per stage of one row: L1 and L2 as the job's two-tier requests timed
    them, the re-rank stage and the whole request as ``result``'s own requests timed them."""
    timed = {s: job.latency[f"{s}_p99_ms"] for s in STAGES if f"{s}_p99_ms" in job.latency}
    if result is None:
        timed.pop("rerank", None)  # a pipeline without a third stage
    else:
        timed["rerank"] = result.metrics["rerank_p99_ms"]
        if "p99_ms" in result.metrics:
            timed["total"] = result.metrics["p99_ms"]
    return {s: timed[s] for s in STAGES if s in timed}


def latency_rows(
    jobs: Sequence[Job], keys: Sequence[str]
) -> dict[LatencyKey, dict[str, list[float]]]:
    """p99 milliseconds per stage, one row per (swept setting, re-ranker), a list over seeds.

    A job whose results time a re-rank stage (``rerank_p99_ms``, as every re-ranker row of a
    pipeline run does) gives one row per re-ranker: its own re-rank and total p99 next to the
    job's L1 and L2 p99 (the re-rankers share those stages). Any other job with a ``latency``
    gives one :data:`TWO_TIER` row of its L1, L2 and total p99.
    """
    out: dict[LatencyKey, dict[str, list[float]]] = {}
    for job in jobs:
        setting = setting_of(job, keys)
        timed = [r for r in job.results if "rerank_p99_ms" in r.metrics]
        rows = [(r.name, _stage_latency(job, r)) for r in timed]
        if not rows and job.latency:
            rows = [(TWO_TIER, _stage_latency(job, None))]
        for name, stages in rows:
            row = out.setdefault((setting, name), {})
            for stage, value in stages.items():
                row.setdefault(stage, []).append(value)
    return out


def latency_label(key: LatencyKey) -> str:
    """``"re-ranker"``, or ``"re-ranker (key=value, ...)"`` when a setting was swept."""
    setting, name = key
    return f"{name} ({setting_label(setting)})" if setting else name


def latency_stages(table: dict[LatencyKey, dict[str, list[float]]]) -> list[str]:
    """The stages of :func:`latency_rows` that any row has, in request order."""
    return [s for s in STAGES if any(s in row for row in table.values())]
