"""``tandem-report``: a Hydra multirun directory as a Markdown report with figures.

``tandem-report runs/multirun/2026-01-31/12-00-00 [--out DIR]`` writes into ``DIR`` (default:
the multirun directory itself):

* ``report.md``: every result (re-ranker, system or model) as mean ± std over seeds with the
  95% CI half-width (t-distribution), grouped by every swept override but ``seed``; the
  accuracy-diversity Pareto front and, for each hybrid re-ranker, the baselines it dominates
  (:func:`simulations.report.dominates`); p99 latency per stage; failed jobs;
* ``frontier.png``: NDCG@10 against ILD@10, one point per re-ranker with 95% CI bars, the
  Pareto-optimal ones ringed and connected (one figure per swept setting);
* ``latency.png``: p99 milliseconds per pipeline stage;
* ``rounds.png``: validation and test NDCG@10 per federated round (from ``fl/rounds.jsonl``).

A figure whose data no job has is left out. Figures are drawn with matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ranking.errors import DataError, TandemError
from ranking.storage import atomic_path, atomic_write_text
from simulations.report import (
    ACCURACY,
    BASELINES,
    DIVERSITY,
    METRIC_ORDER,
    Job,
    Setting,
    Stat,
    by_setting,
    dominates,
    fixed_overrides,
    format_value,
    latency_rows,
    mean_ci,
    pareto_front,
    print_table,
    read_sweep,
    setting_label,
    setting_of,
    skipped_rules,
    summarize,
    swept_keys,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT = "report.md"


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
        f"# Sweep report: `{root}`",
        "",
        f"{len(jobs)} jobs ({len(jobs) - len(failed)} finished, {len(failed)} failed); "
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
    stages = list(dict.fromkeys(s for values in table.values() for s in values))
    rows = []
    for setting, values in table.items():
        cells = []
        for stage in stages:
            mean, std, _ = mean_ci(values.get(stage, []))
            cells.append("" if math.isnan(mean) else f"{format_value(mean)} ± {format_value(std)}")
        rows.append([setting_label(setting), *cells])
    return [
        "## Latency",
        "",
        "p99 milliseconds per stage (mean ± std over seeds).",
        "",
        *_md_table(["setting", *stages], rows),
    ]


# --- figures ---


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_frontier(stats: Sequence[Stat], path: Path, title: str) -> bool:
    """NDCG@10 against ILD@10 of one setting's results; ``False`` (nothing drawn) without data."""
    points = [s for s in stats if ACCURACY in s.mean and DIVERSITY in s.mean]
    if not points:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))

    def err(s: Stat, m: str) -> float:
        return s.ci[m] if math.isfinite(s.ci.get(m, math.nan)) else 0.0

    for s in points:
        ax.errorbar(
            s.mean[DIVERSITY],
            s.mean[ACCURACY],
            xerr=err(s, DIVERSITY),
            yerr=err(s, ACCURACY),
            fmt="o" if s.is_hybrid else "s",
            capsize=3,
            label=f"{s.name} ({'hybrid' if s.is_hybrid else 'baseline'})",
        )
    front = sorted(pareto_front(points), key=lambda s: s.mean[DIVERSITY])
    ax.plot(
        [s.mean[DIVERSITY] for s in front],
        [s.mean[ACCURACY] for s in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    ax.scatter(
        [s.mean[DIVERSITY] for s in front],
        [s.mean[ACCURACY] for s in front],
        s=160,
        facecolors="none",
        edgecolors="k",
    )
    ax.set_xlabel(f"{DIVERSITY} (intra-list diversity)")
    ax.set_ylabel(ACCURACY)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    return True


def plot_latency(jobs: Sequence[Job], keys: Sequence[str], path: Path) -> bool:
    """Bars of p99 milliseconds per stage, one bar group per setting (std as error bars)."""
    table = latency_rows(jobs, keys)
    if not table:
        return False
    plt = _pyplot()
    stages = list(dict.fromkeys(s for values in table.values() for s in values))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(table)
    for i, (setting, values) in enumerate(table.items()):
        stats = [mean_ci(values.get(stage, [])) for stage in stages]
        ax.bar(
            np.arange(len(stages)) + i * width,
            [m for m, _, _ in stats],
            width,
            yerr=[s for _, s, _ in stats],
            capsize=3,
            label=setting_label(setting),
        )
    ax.set_xticks(np.arange(len(stages)) + width * (len(table) - 1) / 2, stages)
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("latency per stage (p99 of single requests)")
    if len(table) > 1:
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def plot_rounds(jobs: Sequence[Job], keys: Sequence[str], path: Path) -> bool:
    """Test and validation NDCG@10 per federated round, mean over seeds (std band), per setting."""
    series: dict[Setting, dict[str, dict[int, list[float]]]] = {}
    for job in jobs:
        for row in job.rounds:
            for metric in (ACCURACY, f"val_{ACCURACY}"):
                if isinstance(row.get(metric), int | float):
                    per_round = series.setdefault(setting_of(job, keys), {}).setdefault(metric, {})
                    per_round.setdefault(int(row["round"]), []).append(float(row[metric]))
    if not series:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for setting, metrics in series.items():
        for metric, per_round in metrics.items():
            rounds = sorted(per_round)
            mean = np.array([np.mean(per_round[r]) for r in rounds])
            std = np.array([np.std(per_round[r]) for r in rounds])
            label = f"{'validation' if metric.startswith('val_') else 'test'} {ACCURACY}"
            if len(series) > 1:
                label += f" ({setting_label(setting)})"
            style = "--" if metric.startswith("val_") else "-"
            (line,) = ax.plot(rounds, mean, style, label=label)
            ax.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("federated round")
    ax.set_ylabel(ACCURACY)
    ax.set_title("federated L2 per round (held-out users)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


# --- the command ---


def make_report(root: Path, out: Path | None = None, ignore: Sequence[str] = ("seed",)) -> Path:
    """Write ``report.md`` and its figures for the sweep in ``root`` into ``out`` (default
    ``root``); returns the report's path.

    Raises
    ------
    DataError
        When ``root`` holds no job, a job's file is malformed (the message names the file), or
        no job finished (the report, listing the failed jobs, is written first).
    """
    root = Path(root)
    out = Path(out) if out is not None else root
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
    columns = ["result", *keys, "n", *metric_columns(stats)[:6]]
    rows = [{"result": s.name, **dict(s.setting), "n": s.n, **s.mean} for s in stats]
    print_table(f"{root}: mean over seeds", rows, columns)
    return report


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
