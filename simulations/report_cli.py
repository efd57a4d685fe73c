"""``tandem-report``: a Hydra multirun directory as a Markdown report with figures.

``tandem-report runs/multirun/2026-01-31/12-00-00 [--out DIR]`` writes into ``DIR`` (default:
the multirun directory itself):

* ``report.md``: every result (re-ranker, system or model) as mean ± std over seeds with the
  95% CI half-width (t-distribution), grouped by every swept override but ``seed``; the
  accuracy-diversity Pareto front and, for each hybrid re-ranker, the baselines it dominates
  (:func:`simulations.report.dominates`); the rules skipped on the dataset; why these items (a
  few jobs' example lists: each item's L1 rank, L2 score and the rules that acted on it); p99
  latency per stage and re-ranker; failed jobs;
* ``frontier.png``: NDCG@10 against ILD@10, one point per re-ranker with 95% CI bars, the
  Pareto-optimal ones ringed and connected (one figure per swept setting);
* ``latency.png``: p99 milliseconds per pipeline stage, one bar per re-ranker;
* ``rounds.png``: validation and test NDCG@10 per federated round (from ``fl/rounds.jsonl``).

A figure whose data no job has is left out (:mod:`simulations.report_figures` draws them). A
single run's directory makes a one-run report: every ``mode=pipeline`` run but a sweep's
jobs writes one (:func:`write_run_report`).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ranking.errors import DataError, TandemError
from ranking.storage import atomic_write_text
from simulations.report import (
    ACCURACY,
    BASELINES,
    DIVERSITY,
    METRIC_ORDER,
    Stat,
    by_setting,
    dominates,
    format_value,
    latency_label,
    latency_rows,
    latency_stages,
    mean_ci,
    pareto_front,
    print_table,
    setting_label,
    summarize,
)
from simulations.report_figures import plot_frontier, plot_latency, plot_rounds
from simulations.report_jobs import (
    Job,
    fixed_overrides,
    read_sweep,
    setting_of,
    skipped_rules,
    swept_keys,
)

REPORT = "report.md"
log = logging.getLogger("tandem")


# --- Markdown ---


def _cell(stat: Stat, metric: str) -> str:
    if metric not in stat.mean:
        return ""
    text = format_value(stat.mean[metric])
    if stat.n > 1:
        text += f" ± {format_value(stat.std[metric])}"
        if math.isfinite(stat.ci[metric]):
            text += f" (±{format_value(stat.ci[metric])})"
    return text


def metric_columns(stats: Sequence[Stat]) -> list[str]:
    """The metrics of ``stats``: those of :data:`~simulations.report.METRIC_ORDER` first."""
    seen = dict.fromkeys(m for s in stats for m in s.mean)
    return [m for m in METRIC_ORDER if m in seen] + [m for m in seen if m not in METRIC_ORDER]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in rows), ""]


def render_markdown(
    root: Path,
    jobs: Sequence[Job],
    stats: Sequence[Stat],
    figures: Sequence[tuple[str, str]] = (),
    ignore: Sequence[str] = ("seed",),
) -> str:
    """The Markdown report of a sweep.

    Parameters
    ----------
    root:
        The multirun directory (job paths are shown relative to it).
    jobs, stats:
        From :func:`simulations.report.read_sweep` and :func:`simulations.report.summarize`.
    figures:
        ``(title, file name)`` of each figure, linked relative to the report.
    ignore:
        The overrides that count as seeds.
    """
    keys = swept_keys(jobs, ignore)
    failed = [j for j in jobs if j.error]
    seeds = sorted(
        {j.overrides[k] for j in jobs for k in ignore if k in j.overrides},
        key=lambda v: (0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v),
    )
    fixed = " ".join(f"`{k}={v}`" for k, v in fixed_overrides(jobs, ignore).items()) or "none"
    lines = [
        f"# {'Sweep report' if len(jobs) > 1 else 'Run report'}: `{root}`",
        "",
        f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} ({len(jobs) - len(failed)} finished, "
        f"{len(failed)} failed); "
        f"{'/'.join(ignore)}: {', '.join(seeds) or 'not swept'}; "
        f"swept: {', '.join(keys) or 'nothing'}; fixed overrides: {fixed}.",
        "",
    ]
    if stats:
        metrics = metric_columns(stats)
        has_method = any(s.method for s in stats)
        header = ["result", *(["method"] if has_method else []), *keys, "n", *metrics]
        rows = [
            [
                s.name,
                *([s.method or ""] if has_method else []),
                *(v for _, v in s.setting),
                str(s.n),
                *(_cell(s, m) for m in metrics),
            ]
            for s in stats
        ]
        lines += [
            "## Results",
            "",
            "Each cell: mean ± sample std over seeds (± 95% CI half-width, t-distribution).",
            "",
            *_md_table(header, rows),
        ]
        lines += _dominance_section(stats)
    lines += _skipped_section(jobs)
    lines += _explanations_section(jobs, keys, root)
    lines += _latency_section(jobs, keys)
    if figures:
        lines += ["## Figures", ""]
    for title, filename in figures:
        lines += [f"### {title}", "", f"![{title}]({filename})", ""]
    if failed:
        lines += ["## Failed jobs", ""]
        for job in failed:
            where = job.path.relative_to(root) if job.path != root else job.path.name
            overrides = " ".join(f"{k}={v}" for k, v in job.overrides.items()) or "no overrides"
            lines.append(f"- `{where}` ({overrides}): {job.error}")
        lines.append("")
    return "\n".join(lines)


def _dominance_section(stats: Sequence[Stat]) -> list[str]:
    if not any(ACCURACY in s.mean and DIVERSITY in s.mean for s in stats):
        return []
    lines = [
        "## Accuracy and diversity",
        "",
        f"A result dominates another when it is at least as good on {ACCURACY} and {DIVERSITY} "
        f"and better on one; {ACCURACY} means inside each other's 95% CI count as equal.",
        "",
    ]
    for setting, group in by_setting(stats).items():
        front = ", ".join(f"`{s.name}`" for s in pareto_front(group)) or "none"
        lines += [f"**{setting_label(setting)}**: Pareto-optimal: {front}.", ""]
        baselines = [s for s in group if not s.is_hybrid]
        names = ", ".join(f"`{b.name}`" for b in baselines)
        for hybrid in (s for s in group if s.is_hybrid):
            if not baselines:
                lines.append(f"- `{hybrid.name}`: no baseline ({', '.join(sorted(BASELINES))})")
                continue
            beaten = [f"`{b.name}`" for b in baselines if dominates(hybrid, b)]
            lines.append(
                f"- `{hybrid.name}` dominates {', '.join(beaten) or 'no baseline'} (of {names})"
            )
        lines.append("")
    return lines


def _skipped_section(jobs: Sequence[Job]) -> list[str]:
    """The rules that could not act on the dataset (an attribute it lacks), per re-ranker."""
    skipped = skipped_rules(jobs)
    if not skipped:
        return []
    lines = ["## Rules skipped on this dataset", ""]
    lines += [f"- `{name}`: {why}" for name, why in sorted(skipped.items())]
    return [*lines, ""]


def _latency_section(jobs: Sequence[Job], keys: Sequence[str]) -> list[str]:
    table = latency_rows(jobs, keys)
    if not table:
        return []
    stages = latency_stages(table)
    rows = []
    for key, values in table.items():
        cells = []
        for stage in stages:
            seeds = values.get(stage, [])
            mean, std, _ = mean_ci(seeds)
            spread = f" ± {format_value(std)}" if len(seeds) > 1 else ""
            cells.append("" if math.isnan(mean) else f"{format_value(mean)}{spread}")
        rows.append([latency_label(key), *cells])
    return [
        "## Latency",
        "",
        "p99 milliseconds per stage of single requests (mean ± std over seeds, if several). "
        "Each re-ranker's re-rank stage and whole request are timed on its own requests; L1 "
        "and L2 are the job's two-tier requests, shared by every re-ranker.",
        "",
        *_md_table(["re-ranker", *stages], rows),
    ]


EXAMPLE_LISTS = 3
"""How many jobs' example lists the report shows."""
_LISTED = re.compile(r"#(\d+) item (-?\d+): (.*)")


def explanation_row(line: str) -> list[str]:
    """``[position, item, L1 rank, L2 score, score and rules]`` of one explanation line
    (``"#0 item 12: L1 rank 3; L2 0.51; score ...; mmr: chosen over item 5 (...)"``); a line of
    another shape lands whole in the last cell."""
    match = _LISTED.fullmatch(line.strip())
    if match is None:
        return ["", "", "", "", line]
    position, item, rest = match.groups()
    parts = rest.split("; ")
    l1 = parts.pop(0).removeprefix("L1 rank ") if parts else ""
    l2 = parts.pop(0).removeprefix("L2 ") if parts and parts[0].startswith("L2 ") else ""
    return [position, item, l1, l2, "; ".join(parts)]


def _explanations_section(jobs: Sequence[Job], keys: Sequence[str], root: Path) -> list[str]:
    """A few jobs' example lists: why each item is in a hybrid re-ranker's top items."""
    examples = [j for j in jobs if j.explanations.get("lines")][:EXAMPLE_LISTS]
    if not examples:
        return []
    lines = [
        "## Why these items",
        "",
        "The top items of a hybrid re-ranker for one held-out user (from each job's "
        "`metrics.json`): each item's L1 rank, L2 score, final score and the rules that acted "
        "on it (boosts with their contribution, pins, diversifiers). Filters and caps act on the "
        "items they took out, which are not listed.",
        "",
    ]
    for job in examples:
        where = job.path.relative_to(root) if job.path != root else job.path.name
        labels = [setting_label(setting_of(job, keys))] if keys else []
        labels += [f"seed={job.overrides['seed']}"] if "seed" in job.overrides else []
        history = job.explanations.get("history")
        user = f", a held-out user whose last items are {history}" if history else ""
        name = job.explanations.get("reranker", "?")
        lines += [f"**`{name}`** (job `{where}`{''.join(f', {x}' for x in labels)}){user}:", ""]
        header = ["#", "item", "L1 rank", "L2 score", "score and rules"]
        lines += _md_table(header, [explanation_row(t) for t in job.explanations["lines"]])
    return lines


def make_report(
    root: Path,
    out: Path | None = None,
    ignore: Sequence[str] = ("seed",),
    *,
    show_table: bool = True,
) -> Path:
    """Write ``report.md`` and its figures for the sweep in ``root`` into ``out`` (default
    ``root``); returns the report's path. ``show_table`` also prints the means on stdout.

    Raises
    ------
    DataError
        When ``root`` holds no job, a job's file is malformed (the message names the file), or
        no job finished (the report, listing the failed jobs, is written first).
    """
    root = Path(root)
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    jobs = read_sweep(root)
    stats = summarize(jobs, ignore)
    keys = swept_keys(jobs, ignore)
    figures = []
    settings = by_setting(stats)
    for i, (setting, group) in enumerate(settings.items()):
        name = "frontier.png" if len(settings) == 1 else f"frontier-{i}.png"
        title = f"accuracy vs diversity ({setting_label(setting)})"
        if plot_frontier(group, out / name, title):
            figures.append((title, name))
    if plot_latency(jobs, keys, out / "latency.png"):
        figures.append(("latency per stage", "latency.png"))
    if plot_rounds(jobs, keys, out / "rounds.png"):
        figures.append(("federated rounds", "rounds.png"))
    report = out / REPORT
    atomic_write_text(report, render_markdown(root, jobs, stats, figures, ignore))
    if not stats:
        raise DataError(f"no job finished; {report} lists the failed ones", path=root)
    if show_table:
        columns = ["result", *keys, "n", *metric_columns(stats)[:6]]
        rows = [{"result": s.name, **dict(s.setting), "n": s.n, **s.mean} for s in stats]
        print_table(f"{root}: mean over seeds", rows, columns)
    return report


def write_run_report(output_dir: Path) -> Path | None:
    """A one-run report: :func:`make_report` of ``output_dir`` into itself, its table not
    printed (the run printed its own). ``None`` when it cannot be written: the failure is
    logged, and the run it reports on stands."""
    try:
        return make_report(output_dir, output_dir, show_table=False)
    except (TandemError, OSError) as exc:
        log.warning("no report written for %s: %s", output_dir, exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point (``tandem-report``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="tandem-report",
        description="Turn a Hydra multirun directory into report.md and PNG figures.",
    )
    parser.add_argument("multirun_dir", type=Path, help="the sweep's directory (runs/multirun/...)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: the sweep's)"
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="another override to aggregate over, like seed (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        report = make_report(args.multirun_dir, args.out, ("seed", *args.ignore))
    except TandemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
