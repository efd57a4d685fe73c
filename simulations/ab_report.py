"""``tandem-ab-report``: compare A/B variants on the service's logged outcomes.

The service logs every answer it gave a known user (``impressions.jsonl``, beside the event log:
user, variant, items shown, and the event-log position at that moment). An impression is a **hit**
when the user's next event in the log (the first one after that position) is one of the items
shown: a CTR-style hit rate. Impressions whose user has no later event are left out and counted.

For each variant: impressions with an outcome, hits, hit rate and its 95% Wilson interval; for each
variant against the first: the difference of rates with a 95% normal-approximation interval.

    tandem-ab-report serving-state/            # the directory of events.log and impressions.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ranking.errors import DataError
from simulations.report import print_table

Z = 1.959963984540054  # two-sided 95%


def wilson(hits: int, n: int, z: float = Z) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read ({exc})", path=path) from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"line {n} is not JSON ({exc})", path=path) from exc
    return rows


def outcomes(state: Path) -> tuple[dict[str, list[int]], int]:
    """Per variant, 1/0 per impression with an outcome; and how many had none."""
    events = _read_jsonl(state / "events.log")
    impressions = _read_jsonl(state / "impressions.jsonl")
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in events:
        by_user[e["user"]].append((int(e["seq"]), e["item"]))
    result: dict[str, list[int]] = defaultdict(list)
    unresolved = 0
    for imp in impressions:
        later = [item for seq, item in by_user.get(imp["user"], []) if seq >= int(imp["after_seq"])]
        if not later:
            unresolved += 1
            continue
        result[imp["variant"]].append(int(later[0] in imp["items"]))
    return dict(result), unresolved


def compare(per_variant: dict[str, list[int]]) -> list[dict[str, Any]]:
    rows = []
    base_name = next(iter(per_variant), None)
    for name, hits in per_variant.items():
        n, h = len(hits), sum(hits)
        lo, hi = wilson(h, n)
        row: dict[str, Any] = {"variant": name, "impressions": n, "hits": h, "hit_rate": h / n}
        row.update(ci_low=lo, ci_high=hi)
        if base_name is not None and name != base_name:
            b = per_variant[base_name]
            p1, p0 = h / n, sum(b) / len(b)
            se = math.sqrt(p1 * (1 - p1) / n + p0 * (1 - p0) / len(b))
            row.update(diff_vs_first=p1 - p0, diff_low=p1 - p0 - Z * se, diff_high=p1 - p0 + Z * se)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-ab-report", description=__doc__.split("\n")[0])
    parser.add_argument("state", help="directory holding events.log and impressions.jsonl")
    args = parser.parse_args(argv)
    try:
        per_variant, unresolved = outcomes(Path(args.state))
    except DataError as exc:
        print(f"tandem-ab-report: {exc}", file=sys.stderr)
        return 2
    if not per_variant:
        print("tandem-ab-report: no impression has an outcome yet", file=sys.stderr)
        return 1

    rows = compare(per_variant)
    print_table(
        f"A/B: hit rate = the user's next event is among the items shown ({unresolved} impressions "
        "without a later event left out); 95% intervals",
        rows,
        columns=list(dict.fromkeys(k for r in rows for k in r)),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
