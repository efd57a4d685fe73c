"""Reading a sweep for :mod:`simulations.report`: every job of a Hydra multirun directory.

:func:`read_sweep` finds the jobs (``.hydra/overrides.yaml`` or a lone ``metrics.json``) and
:func:`read_job` reads one: its overrides, its result rows (re-rankers, systems, models or the last
federated round), its per-stage latency, its federated rounds (``fl/rounds.jsonl``), the rules its
re-rankers skipped and its example explanations. A malformed file is a :class:`DataError` naming
the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ranking.errors import DataError

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
    explanations: dict[str, Any] = field(default_factory=dict)
    """One example list of the job (``metrics.json["explanations"]``): ``reranker``, ``history``
    (the user's last items) and ``lines`` (why each listed item is there); empty when none."""


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


def explanation_example(metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    """The job's example explanations (``{}`` when it has none).

    Raises
    ------
    DataError
        When ``explanations`` is there but is not ``{reranker, lines: [str, ...], ...}``.
    """
    example = metrics.get("explanations")
    if not example:
        return {}
    lines = example.get("lines") if isinstance(example, dict) else None
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise DataError("'explanations' must be an object with a 'lines' list of text", path=path)
    return example


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
    job.explanations = explanation_example(metrics, metrics_path)
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
