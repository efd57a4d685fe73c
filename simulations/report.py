"""Result tables: the one way runs, sweeps and benchmarks show rows of metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


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


def rows_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Table:
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


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` as a table on stdout (wide enough for metric columns even when piped)."""
    Console(width=200).print(rows_table(title, rows, columns))


def write_results(path: Path, rows: Sequence[dict[str, Any]], key: Sequence[str] = ("dataset", "method", "setting")) -> None:
    """Write benchmark ``rows`` to ``path`` (atomically), keeping earlier rows whose ``key`` differs."""
    from encoders.storage import atomic_write_text

    fresh = {tuple(r.get(c) for c in key) for r in rows}
    old: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = [r for r in json.loads(path.read_text()) if tuple(r.get(c) for c in key) not in fresh]
        except (ValueError, TypeError, AttributeError):
            old = []
    atomic_write_text(path, json.dumps([*old, *rows], indent=2) + "\n")
