"""The A/B analysis: hit rates per variant from the service's logs, with intervals that can fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ranking.errors import DataError
from simulations.ab_report import compare, main, outcomes, wilson


def write_state(path: Path, rates: dict[str, float], n: int = 400, seed: int = 0) -> None:
    """``n`` users per variant; each is shown items, then clicks one shown with ``rate``."""
    rng = np.random.default_rng(seed)
    events, impressions, seq = [], [], 0
    for variant, rate in rates.items():
        for u in range(n):
            user = f"{variant}-{u}"
            impressions.append(
                {"user": user, "variant": variant, "after_seq": seq, "items": ["a", "b"]}
            )
            item = "a" if rng.random() < rate else "z"
            events.append({"seq": seq, "user": user, "item": item})
            seq += 1
    impressions.append({"user": "nobody", "variant": "A", "after_seq": seq, "items": ["a"]})
    path.mkdir(parents=True, exist_ok=True)
    (path / "events.log").write_text("".join(json.dumps(e) + "\n" for e in events))
    (path / "impressions.jsonl").write_text("".join(json.dumps(i) + "\n" for i in impressions))


def test_hit_rates_and_intervals_separate_different_variants(tmp_path):
    write_state(tmp_path, {"A": 0.30, "B": 0.45})
    per_variant, unresolved = outcomes(tmp_path)
    assert unresolved == 1 and {k: len(v) for k, v in per_variant.items()} == {"A": 400, "B": 400}
    a, b = compare(per_variant)
    assert a["ci_low"] < 0.30 < a["ci_high"] and b["ci_low"] < 0.45 < b["ci_high"]
    assert 0 < b["diff_low"] < 0.15 < b["diff_high"]  # the true difference, and not zero


def test_equal_variants_give_a_difference_interval_around_zero(tmp_path):
    write_state(tmp_path, {"A": 0.3, "B": 0.3}, seed=3)
    _, b = compare(outcomes(tmp_path)[0])
    assert b["diff_low"] < 0 < b["diff_high"]


def test_wilson_interval_is_within_zero_and_one_and_narrows_with_n():
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0, abs=1e-12) and 0 < hi < 0.35
    assert wilson(50, 100)[1] - wilson(50, 100)[0] > wilson(500, 1000)[1] - wilson(500, 1000)[0]


def test_a_malformed_log_is_named(tmp_path, capsys):
    write_state(tmp_path, {"A": 0.5})
    with open(tmp_path / "events.log", "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(DataError, match="events.log.*line 401"):
        outcomes(tmp_path)
    assert main([str(tmp_path)]) == 2 and "line 401" in capsys.readouterr().err
