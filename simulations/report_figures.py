"""The figures of a sweep report (``tandem-report``, :mod:`simulations.report_cli`).

* :func:`plot_frontier`: NDCG@10 against ILD@10, one point per re-ranker with 95% CI bars, the
  Pareto-optimal ones ringed and connected;
* :func:`plot_latency`: p99 milliseconds per pipeline stage, one bar per re-ranker (and setting);
* :func:`plot_rounds`: validation and test NDCG@10 per federated round.

Each returns ``False`` and draws nothing when no job has its data. Figures are drawn with
matplotlib's Agg backend (no display needed) and written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ranking.storage import atomic_path
from simulations.report import (
    ACCURACY,
    DIVERSITY,
    Stat,
    latency_label,
    latency_rows,
    latency_stages,
    mean_ci,
    pareto_front,
    setting_label,
)
from simulations.report_jobs import Job, Setting, setting_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    """Bars of p99 milliseconds per stage, one bar per re-ranker (and swept setting), mean over
    seeds with the std as error bars: each re-ranker's re-rank stage is its own."""
    table = latency_rows(jobs, keys)
    if not table:
        return False
    plt = _pyplot()
    stages = latency_stages(table)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(stages) + 0.3 * len(table)), 4.0))
    width = 0.8 / len(table)
    for i, (key, values) in enumerate(table.items()):
        stats = [mean_ci(values.get(stage, [])) for stage in stages]
        ax.bar(
            np.arange(len(stages)) + i * width,
            [m for m, _, _ in stats],
            width,
            yerr=[s for _, s, _ in stats],
            capsize=3,
            label=latency_label(key),
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
