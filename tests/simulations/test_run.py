"""The Hydra entry point: composed configs, end-to-end runs and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ranking.errors import ConfigError, DataError
from simulations.run import run

CONF = str(Path(__file__).resolve().parents[2] / "conf")
TINY_WORLD = ["mode=central", "encoder=none", "dataset.n_items=120", "dataset.n_users=80"]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_default_run_writes_metrics_and_beats_nothing_by_accident(tmp_path):
    cfg = composed(*TINY_WORLD, "model=itemknn", f"paths.cache_dir={tmp_path / 'cache'}")
    rows = run(cfg, output_dir=tmp_path)
    assert [r["model"] for r in rows] == ["ItemKNN", "pop"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dataset"]["users"] == 80
    assert saved["results"][1]["ndcg@10"] == pytest.approx(rows[1]["ndcg@10"])
    for row in rows:
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0
    # ItemKNN uses the session; on the synthetic world it must beat most-popular.
    assert rows[0]["ndcg@10"] > rows[1]["ndcg@10"]


def test_same_seed_same_results(tmp_path):
    a = run(composed(*TINY_WORLD, "model=pop", f"paths.cache_dir={tmp_path}"))
    b = run(composed(*TINY_WORLD, "model=pop", f"paths.cache_dir={tmp_path}"))
    assert a[0]["ndcg@10"] == b[0]["ndcg@10"]


def test_temporal_split_and_sampled_protocol_run(tmp_path):
    rows = run(composed(*TINY_WORLD, "split=temporal", "eval.protocol=sampled", f"paths.cache_dir={tmp_path}"))
    assert rows[0]["n_users"] > 0


def test_bad_split_kind_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="split.kind='weekly'"):
        run(composed(*TINY_WORLD, "split.kind=weekly", f"paths.cache_dir={tmp_path}"))


def test_missing_data_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.txt"):
        run(composed("dataset=user_item_pairs", f"dataset.path={tmp_path / 'nope.txt'}"))


def run_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "simulations.run", *overrides, f"paths.cache_dir={tmp_path}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_prints_a_table_and_exits_zero(tmp_path):
    proc = run_cli(tmp_path, *TINY_WORLD, "model=pop")
    assert proc.returncode == 0, proc.stderr
    assert "ndcg@10" in proc.stdout and "pop" in proc.stdout
    assert (tmp_path / "run" / "metrics.json").exists()


def test_cli_bad_input_exits_non_zero_with_a_clear_message(tmp_path):
    proc = run_cli(tmp_path, "dataset=user_item_pairs", f"dataset.path={tmp_path / 'missing.txt'}")
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "missing.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cli_unknown_override_exits_non_zero(tmp_path):
    proc = run_cli(tmp_path, "model=transformerxl")
    assert proc.returncode != 0
    assert "transformerxl" in proc.stderr


def test_sasrec_run_trains_with_early_stopping_and_beats_popularity(tmp_path):
    cfg = composed(
        *TINY_WORLD, "model=sasrec", "train.epochs=8", "train.patience=2",
        "train.progress=false", f"paths.cache_dir={tmp_path}",
    )  # fmt: skip
    rows = run(cfg)
    assert [r["model"] for r in rows] == ["sasrec", "pop"]
    assert rows[0]["ndcg@10"] > rows[1]["ndcg@10"]
