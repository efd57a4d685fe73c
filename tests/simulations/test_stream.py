"""mode=stream: the live service on a replayed log; a drift alarm retrains federatedly and swaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from fl.server_app import warm_start_state
from ranking.errors import ConfigError
from simulations.drift import DriftMonitor, js_divergence
from simulations.run import run

CONF = str(Path(__file__).resolve().parents[2] / "conf")
TINY_STREAM = [
    "mode=stream",
    "dataset.n_items=150",
    "dataset.n_users=120",
    "encoder.epochs=1",
    "pipeline.l1.epochs=2",
    "fl.partition=users_per_client",
    "fl.users_per_client=10",
    "fl.fraction_train=1.0",
    "fl.heldout_fraction=0.2",
    "stream.initial_epochs=3",
    "stream.max_events=400",
    "stream.window=60",
    "stream.retrain_rounds=1",
    "stream.retrain_after=30",
    "stream.log_every=20",
    "tracking.enabled=false",
]


def test_a_drift_alarm_retrains_federatedly_and_swaps_the_live_bundle(tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                *TINY_STREAM,
                "stream.divergence_threshold=0.0001",  # any category mix raises the alarm
                f"paths.cache_dir={tmp_path / 'cache'}",
            ],
        )
    (row,) = run(cfg, output_dir=tmp_path / "run")
    assert row["events"] == 400 and 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    swaps = [r for r in saved["retrains"] if r["version"] is not None]
    assert row["swaps"] == len(swaps) >= 1
    # the alarm needs two full windows after each go-live: at most one per 120 events
    events = [r["event"] for r in saved["alarms"]]
    assert all(r["retrained_at"] - r["event"] >= 30 for r in swaps)
    assert all(b - a >= 120 for a, b in zip([-1, *events], events, strict=False))
    served = [r["model_version"] for r in saved["series"]]
    assert served[0] == "v0" and served[-1] == swaps[-1]["version"]
    assert (tmp_path / "run" / "retrain-1" / "fl" / "best_model" / "manifest.json").exists()
    outcomes = np.load(tmp_path / "run" / "stream_outcomes.npz")
    assert outcomes["hit"].mean() == pytest.approx(row["hr@10"])
    assert (tmp_path / "run" / "online_hr.png").stat().st_size > 0
    logged = (tmp_path / "run" / "service" / "events.log").read_text().splitlines()
    assert len(logged) > 400  # the warm-up events, then every live one, each acknowledged


def test_the_monitor_alarms_on_a_drop_in_hit_rate_not_before_two_windows():
    monitor = DriftMonitor(n_categories=3, window=50, hr_drop=0.2, divergence_threshold=1.0)
    monitor.reset(np.array([10.0, 10.0, 10.0]))
    triggers = [monitor.update(True, n % 3).trigger for n in range(100)]
    assert not any(triggers)  # a steady hit rate
    triggers = [monitor.update(n % 4 == 0, n % 3).trigger for n in range(100)]
    assert any(t and "HR@10" in t for t in triggers)


def test_js_divergence_is_zero_for_equal_mixes_and_one_for_disjoint():
    assert js_divergence(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0)
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_a_warm_start_checkpoint_must_fit_the_model(tmp_path):
    from ranking.recommender import SequenceRecommender

    model = SequenceRecommender("sasrec", n_items=20, model={"hidden": 8, "n_blocks": 1})
    path = model.save(tmp_path / "ckpt")
    fresh = {k: v.numpy().copy() for k, v in model.network.state_dict().items()}
    state = warm_start_state(path, {k: np.zeros_like(v) for k, v in fresh.items()})
    assert all(np.array_equal(state[k], fresh[k]) for k in fresh)
    bigger = SequenceRecommender("sasrec", n_items=30, model={"hidden": 8, "n_blocks": 1})
    other = {k: v.numpy() for k, v in bigger.network.state_dict().items()}
    with pytest.raises(ConfigError, match="does not fit the configured model"):
        warm_start_state(path, other)
