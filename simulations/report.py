"""Result tables: the one way runs, sweeps and benchmarks show rows of metrics.

Also the sweep report behind ``tandem-report`` (figures and the command line live in
:mod:`simulations.report_cli`): :func:`read_sweep` reads every job of a Hydra multirun directory
(``metrics.json``, ``.hydra/overrides.yaml``, ``fl/rounds.jsonl``), :func:`summarize` aggregates
each result over seeds (grouped by its name and by every swept override but ``seed``),
:func:`dominates` compares two results on accuracy and diversity and :func:`pareto_front` keeps
the undominated ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from ranking.errors import DataError


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


# --- sweep reports (``tandem-report``; Markdown, figures and command: simulations/report_cli.py) ---

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
NOT_METRICS = frozenset({"round", "users", "n_users", "seed"})
METRICS_FILE = "metrics.json"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
ROUNDS_FILE = Path("fl") / "rounds.jsonl"


Setting = tuple[tuple[str, str], ...]
"""The swept overrides of a job or result, as ``((key, value), ...)``."""


@dataclass(frozen=True)
class Result:
    """One result row of a job: a re-ranker (or system, or model) and its numeric metrics."""

    name: str
    method: str | None
    metrics: dict[str, float]


@dataclass
class Job:
    """One Hydra job directory of a sweep; ``error`` says why it has no results (it failed)."""

    path: Path
    overrides: dict[str, str]
    results: list[Result] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    skipped_rules: dict[str, str] = field(default_factory=dict)
    """Per re-ranker, the rules it skipped on this dataset and why (``metrics.json``)."""


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if _is_number(v) and k not in NOT_METRICS}


def _numbered_rounds(rows: Any) -> list[dict[str, Any]]:
    """The rows of a round list that carry a round number (not the ``"central"`` row)."""
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and _is_number(r.get("round"))]


def result_rows(metrics: dict[str, Any], path: Path) -> list[Result]:
    """The result rows of a parsed ``metrics.json``: its ``rerankers`` list, else ``results``
    (rows named by ``system`` or ``model``), else the last round of ``rounds`` (federated mode)."""
    for key, names in (
        ("rerankers", ("reranker", "method", "system")),
        ("results", ("system", "model")),
    ):
        rows = metrics.get(key)
        if rows is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(
                f"{key!r} must be a list of objects, got {type(rows).__name__}", path=path
            )
        out = []
        for i, row in enumerate(rows):
            name = next((row[k] for k in names if row.get(k) is not None), None)
            if name is None:
                raise DataError(
                    f"{key}[{i}] names no result (no {' or '.join(names)} key)", path=path
                )
            method = row.get("method")
            out.append(Result(str(name), None if method is None else str(method), _numbers(row)))
        return out
    rounds = _numbered_rounds(metrics.get("rounds"))
    if rounds:
        return [Result("federated L2 (last round)", None, _numbers(rounds[-1]))]
    raise DataError("holds no 'rerankers', 'results' or 'rounds' list", path=path)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc


def _read_overrides(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        items = yaml.safe_load(_text(path))
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}", path=path) from exc
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise DataError("expected a list of Hydra overrides (key=value strings)", path=path)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep and not key.startswith("~"):
            raise DataError(f"override {item!r} is not key=value", path=path)
        out[key.lstrip("+~")] = value if sep else "<deleted>"
    return out


def _read_rounds(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for lineno, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"not a JSON line: {exc.msg}", path=path, line=lineno) from exc
    return _numbered_rounds(rows)


def read_job(path: Path) -> Job:
    """Read one job directory: ``.hydra/overrides.yaml``, ``metrics.json``, ``fl/rounds.jsonl``.

    Raises
    ------
    DataError
        When a file exists but is malformed (the message names the file).
    """
    job = Job(path, _read_overrides(path / OVERRIDES_FILE))
    metrics_path = path / METRICS_FILE
    if not metrics_path.exists():
        job.error = f"no {METRICS_FILE} (the job failed or has not finished)"
        return job
    try:
        metrics = json.loads(_text(metrics_path))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", path=metrics_path, line=exc.lineno) from exc
    if not isinstance(metrics, dict):
        raise DataError(f"expected a JSON object, got {type(metrics).__name__}", path=metrics_path)
    job.results = result_rows(metrics, metrics_path)
    job.skipped_rules = {
        str(row.get("reranker")): row["skipped_rules"]
        for row in metrics.get("rerankers") or []
        if isinstance(row, dict)
        and isinstance(row.get("skipped_rules"), str)
        and row["skipped_rules"]
    }
    latency = metrics.get("latency") or {}
    job.latency = (
        {k: float(v) for k, v in latency.items() if _is_number(v)}
        if isinstance(latency, dict)
        else {}
    )
    job.rounds = _read_rounds(path / ROUNDS_FILE) or _numbered_rounds(metrics.get("rounds"))
    return job


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), str(path)) if path.name.isdigit() else (1 << 30, str(path))


def skipped_rules(jobs: Sequence[Job]) -> dict[str, str]:
    """``{re-ranker: the rules it skipped and why}`` over a sweep's jobs."""
    return {name: why for job in jobs for name, why in job.skipped_rules.items()}


def read_sweep(root: Path) -> list[Job]:
    """Every job under a Hydra multirun directory (or the one job of a single-run directory)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("is not a directory (expected a Hydra multirun directory)", path=root)
    dirs = {p.parent.parent for p in root.rglob(str(OVERRIDES_FILE))}
    for path in root.rglob(METRICS_FILE):  # a job directory without .hydra (not one inside a job)
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts[:-1])
        if not hidden and not any(d in path.parents for d in dirs):
            dirs.add(path.parent)
    if not dirs:
        raise DataError(
            f"holds no Hydra job (no {OVERRIDES_FILE} or {METRICS_FILE} below it)", path=root
        )
    return [read_job(d) for d in sorted(dirs, key=_job_order)]


def swept_keys(jobs: Sequence[Job], ignore: Sequence[str] = ("seed",)) -> list[str]:
    """The overrides whose value differs between jobs, but ``ignore`` (the seeds)."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides if k not in ignore))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def fixed_overrides(jobs: Sequence[Job], ignore: Sequence[str] = ("seed",)) -> dict[str, str]:
    """The overrides every job shares (the sweep's fixed settings)."""
    swept = set(swept_keys(jobs, ignore))
    keys = dict.fromkeys(k for j in jobs for k in j.overrides if k not in ignore and k not in swept)
    return {k: jobs[0].overrides[k] for k in keys}


def setting_of(job: Job, keys: Sequence[str]) -> Setting:
    """The job's values of the swept ``keys`` (``""`` where the job does not set one)."""
    return tuple((k, job.overrides.get(k, "")) for k in keys)


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


def latency_rows(jobs: Sequence[Job], keys: Sequence[str]) -> dict[Setting, dict[str, list[float]]]:
    """p99 milliseconds per stage (``<stage>_p99_ms`` of each job's ``latency``), per setting."""
    out: dict[Setting, dict[str, list[float]]] = {}
    for job in jobs:
        for key, value in job.latency.items():
            if key.endswith("_p99_ms"):
                stages = out.setdefault(setting_of(job, keys), {})
                stages.setdefault(key.removesuffix("_p99_ms"), []).append(value)
    return out
