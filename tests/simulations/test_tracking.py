"""W&B tracking: offline runs land under the run directory with their config, history, summary
and exit code; a disabled tracker writes nothing; a failing job is still finished."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from ranking.errors import ConfigError
from simulations.tracking import (
    Tracker,
    active_tracker,
    epoch_callback,
    resolve_mode,
    tracking_settings,
)

CONFIG = {
    "mode": "pipeline",
    "seed": 3,
    "model": {"kind": "sasrec", "hidden": 32},
    "tracking": {"project": "t"},
}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B in offline mode, with every W&B file under ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    return tmp_path


def leveldb_records(path: Path) -> list[bytes]:
    """The records of a W&B transaction log (``run-<id>.wandb``): a 7-byte header, then the
    LevelDB log format (32 KiB blocks of chunks: crc32c, length, type FULL/FIRST/MIDDLE/LAST)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a chunk header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            records.append(pending)
            pending = b""
    return records


def _items(items: Any) -> dict[str, Any]:
    return {(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in items}


def offline_run(run_dir: Path) -> dict[str, Any]:
    """What the one offline run under ``run_dir/wandb`` recorded: config, history rows,
    summary and exit code (decoded from its transaction log)."""
    from wandb.proto import wandb_internal_pb2

    (run_path,) = (run_dir / "wandb").glob("offline-run-*")
    (log_file,) = run_path.glob("run-*.wandb")
    out: dict[str, Any] = {
        "config": {},
        "history": [],
        "summary": {},
        "exit_code": None,
        "run": None,
    }
    for raw in leveldb_records(log_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update(_items(record.run.config.update))
        elif kind == "config":
            out["config"].update(_items(record.config.update))
        elif kind == "history":
            out["history"].append(_items(record.history.item))
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def test_offline_run_records_config_rounds_and_summary(offline):
    run_dir = offline / "job"
    with Tracker.start(
        CONFIG, job_type="pipeline", group="sweep-1", run_dir=run_dir, name="job-0"
    ) as tracker:
        assert tracker.enabled and tracker.mode == "offline"
        assert (
            tracker.run_path is not None
            and tracker.run_path.parent == (run_dir / "wandb").resolve()
        )
        tracker.log_round({"round": 1, "ndcg@10": 0.1, "strategy": "fedavg"})
        tracker.log_round({"round": 2, "ndcg@10": 0.2})
        tracker.log_round({"round": "central", "ndcg@10": 0.25})
        tracker.log_table(
            "rerankers",
            [{"reranker": "neural", "ndcg@10": 0.3}, {"reranker": "mmr", "ild@10": 0.5}],
        )
        tracker.summary({"ndcg@10": 0.31, "hr@10": 0.52})
    assert not tracker.enabled
    saved = offline_run(run_dir)
    assert saved["config"]["seed"] == 3 and saved["config"]["model"] == {
        "kind": "sasrec",
        "hidden": 32,
    }
    assert saved["run"].project == "t" and saved["run"].run_group == "sweep-1"
    assert saved["run"].job_type == "pipeline" and saved["run"].display_name == "job-0"
    rounds = [(h["round"], h["round/ndcg@10"]) for h in saved["history"] if "round/ndcg@10" in h]
    assert rounds == [(1, 0.1), (2, 0.2)]
    assert saved["summary"]["ndcg@10"] == 0.31 and saved["summary"]["hr@10"] == 0.52
    assert saved["summary"]["central/ndcg@10"] == 0.25
    assert saved["exit_code"] == 0
    assert not (offline / "wandb-dir").exists()  # the run directory wins over WANDB_DIR


def test_disabled_tracker_writes_nothing(offline):
    run_dir = offline / "job"
    config = {**CONFIG, "tracking": {"enabled": False}}
    with Tracker.start(config, job_type="central", run_dir=run_dir) as tracker:
        assert not tracker.enabled and tracker.mode == "disabled"
        tracker.log_round({"round": 1, "ndcg@10": 0.1})
        tracker.log_epoch({"loss": 1.0})
        tracker.log_table("t", [{"a": 1}])
        tracker.summary({"ndcg@10": 0.3})
    assert not run_dir.exists()
    assert sorted(p.name for p in offline.iterdir()) == []


def test_an_exception_still_finishes_the_run_as_failed(offline):
    import wandb

    run_dir = offline / "job"
    with (
        pytest.raises(RuntimeError, match="boom"),
        Tracker.start(CONFIG, job_type="federated", run_dir=run_dir) as tr,
    ):
        tr.log_epoch({"loss": 2.0})
        raise RuntimeError("boom")
    assert wandb.run is None and not tr.enabled
    saved = offline_run(run_dir)
    assert saved["exit_code"] == 1
    assert [h["epoch/loss"] for h in saved["history"] if "epoch/loss" in h] == [2.0]


def test_each_trainer_logs_one_row_per_epoch_to_the_open_tracker(offline):
    from builders import rule_log

    from encoders.clip import ClipEncoder
    from encoders.contrastive import ContrastiveConfig, train_contrastive
    from ranking.data.splits import leave_one_out
    from ranking.recommender import SequenceRecommender
    from ranking.two_tower import TwoTowerRetriever
    from simulations.datasets.synthetic import generate_world

    split = leave_one_out(rule_log(n_items=20, n_users=24, seed=1))
    fast = {"batch_size": 32, "max_len": 8, "progress": False}
    catalog = generate_world(n_items=16, n_users=4, seed=0).dataset.catalog
    images = [catalog.image(i) for i in range(8)]
    run_dir = offline / "job"
    epoch_callback("l2")(1, {"loss": 9.0})  # no open tracker: nothing to log to, no error
    with Tracker.start(CONFIG, job_type="central", run_dir=run_dir) as tracker:
        assert active_tracker() is tracker
        SequenceRecommender("sasrec", model={"hidden": 8}, train={**fast, "epochs": 3}).fit(
            split.train, validation=split, callback=epoch_callback("l2")
        )
        TwoTowerRetriever(
            n_items=20, dim=8, train={**fast, "epochs": 2}, index={"factory": "Flat"}
        ).fit(split.train, callback=epoch_callback("l1"))
        train_contrastive(
            ClipEncoder(allow_random_init=True, seed=0),
            images,
            list(catalog.text[:8]),
            ContrastiveConfig(epochs=2, batch_size=4),
            callback=epoch_callback("clip"),
        )
    assert active_tracker() is None
    history = offline_run(run_dir)["history"]

    def curve(key: str) -> list[tuple[int, float]]:
        return [(h["epoch"], h[key]) for h in history if key in h]

    l2 = curve("epoch/l2/loss")
    assert [epoch for epoch, _ in l2] == [1, 2, 3] and all(math.isfinite(v) for _, v in l2)
    assert [epoch for epoch, _ in curve("epoch/l2/val_ndcg@10")] == [1, 2, 3]
    assert [epoch for epoch, _ in curve("epoch/l1/loss")] == [1, 2]
    assert [epoch for epoch, _ in curve("epoch/clip/loss")] == [1, 2]


def test_mode_rules(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode() == "offline"
    assert resolve_mode(enabled=False) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="WANDB_MODE='sometimes'"):
        resolve_mode()


def test_online_without_credentials_is_a_config_error_not_a_prompt(offline, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(offline))
    monkeypatch.setenv("NETRC", str(offline / "no-netrc"))
    with pytest.raises(ConfigError, match="no credentials"):
        Tracker.start(CONFIG, job_type="central", run_dir=offline / "job")


def test_tracking_section_is_checked():
    assert tracking_settings({})["project"] == "tandem"
    with pytest.raises(ConfigError, match="tracking.projekt"):
        tracking_settings({"tracking": {"projekt": "x"}})
    with pytest.raises(ConfigError, match="tracking.enabled"):
        tracking_settings({"tracking": {"enabled": "yes"}})
