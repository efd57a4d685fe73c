"""The Hydra entry point: composed configs, end-to-end runs and clear errors."""

import json
import re
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
    assert [r["model"] for r in rows] == [
        "ItemKNN",
        "MostPopular",
    ]  # class names outside the Hydra CLI
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dataset"]["users"] == 80
    assert saved["results"][1]["ndcg@10"] == pytest.approx(rows[1]["ndcg@10"])
    for row in rows:
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0
    # ItemKNN uses the session; on the synthetic world it must beat most-popular.
    assert rows[0]["ndcg@10"] > rows[1]["ndcg@10"]


NEURAL = [
    "model=gru4rec",
    "model.model.hidden=16",
    "train.epochs=2",
    "train.progress=false",
    "~model@reference",
]


def test_same_seed_same_results_and_another_seed_other_weights(tmp_path):
    a = run(composed(*TINY_WORLD, *NEURAL, f"paths.cache_dir={tmp_path}"))
    b = run(composed(*TINY_WORLD, *NEURAL, f"paths.cache_dir={tmp_path}"))
    assert len(a) == 1 and a[0]["ndcg@10"] == b[0]["ndcg@10"] and a[0]["hr@20"] == b[0]["hr@20"]
    from hydra.utils import instantiate

    from ranking.data import leave_one_out
    from simulations.datasets.synthetic import generate_world

    train = leave_one_out(
        generate_world(n_items=120, n_users=80, seed=0).dataset.interactions
    ).train
    weights = {}
    for seed in (0, 1):
        model = instantiate(composed(*TINY_WORLD, *NEURAL, f"seed={seed}").model).fit(train)
        weights[seed] = model.network.state_dict()
    assert weights[0].keys() == weights[1].keys()
    assert any(not weights[0][k].equal(weights[1][k]) for k in weights[0])


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["mode=federated", "train.batch_size=-1"], "train.batch_size=-1"),
        (["mode=federated", "fl.num_rounds=0"], "fl.num_rounds=0"),
        (["mode=central", "model=gru4rec", "train.epochs=0"], "train.epochs=0"),
        (["mode=federated", "fl.fraction_train=1.5"], "fl.fraction_train=1.5"),
        (
            ["mode=federated", "fl/strategy=fedprox", "fl.strategy.proximal_mu=-1"],
            "fl.strategy.proximal_mu=-1",
        ),
    ],
)
def test_bad_settings_fail_before_work_and_name_the_key(tmp_path, overrides, key):
    cfg = composed(
        *[o for o in TINY_WORLD if not o.startswith("mode=")],
        *overrides,
        f"paths.cache_dir={tmp_path}",
    )
    with pytest.raises(ConfigError, match=re.escape(key)):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "fl" / "rounds.jsonl").exists()  # nothing ran


def test_a_value_of_the_wrong_type_fails_when_the_run_is_composed(tmp_path):
    proc = run_cli(tmp_path, *TINY_WORLD, "train.epochs=abc")
    assert proc.returncode != 0
    assert "train.epochs" in proc.stderr and "abc" in proc.stderr


def test_temporal_split_and_sampled_protocol_run(tmp_path):
    rows = run(
        composed(
            *TINY_WORLD, "split=temporal", "eval.protocol=sampled", f"paths.cache_dir={tmp_path}"
        )
    )
    assert rows[0]["n_users"] > 0


def test_bad_split_kind_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="split.kind='weekly'"):
        run(composed(*TINY_WORLD, "split.kind=weekly", f"paths.cache_dir={tmp_path}"))


def test_missing_data_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.txt"):
        run(composed("dataset=user_item_pairs", f"dataset.path={tmp_path / 'nope.txt'}"))


def run_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "simulations.run",
            *overrides,
            f"paths.cache_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


def test_cli_bad_federated_setting_stops_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # tracking on: the run must not reach it
    world = [o for o in TINY_WORLD if not o.startswith("mode=")]
    proc = run_cli(tmp_path, *world, "mode=federated", "fl.fraction_train=1.5")
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "fl.fraction_train=1.5" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "wandb").exists()
    assert not list(tmp_path.glob("*.npz"))  # the dataset was not generated either


def test_cli_unknown_override_exits_non_zero(tmp_path):
    proc = run_cli(tmp_path, "model=transformerxl")
    assert proc.returncode != 0
    assert "transformerxl" in proc.stderr


def test_sasrec_run_trains_with_early_stopping_and_beats_popularity(tmp_path):
    cfg = composed(
        *TINY_WORLD,
        "model=sasrec",
        "train.epochs=8",
        "train.patience=2",
        "train.progress=false",
        f"paths.cache_dir={tmp_path}",
    )
    rows = run(cfg)
    assert [r["model"] for r in rows] == ["sasrec", "MostPopular"]
    assert rows[0]["ndcg@10"] > rows[1]["ndcg@10"]


THIRD_PARTY_NOISE = (
    "INFO :",  # Flower's log lines
    "WARNING :",
    "DEPRECATED",
    "Deprecat",
    "FutureWarning",
    "Could not load library with AVX",  # faiss's loader notice
    "ray.",
    "Started a local Ray instance",
)


def test_a_federated_run_prints_only_tandems_lines_and_logs_the_rest(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulations.run",
            "mode=federated",
            "encoder=none",
            "dataset.n_items=150",
            "dataset.n_users=120",
            "fl.num_rounds=2",
            "fl.partition=users_per_client",
            "fl.users_per_client=27",
            "fl.fraction_train=1.0",
            "fl.heldout_fraction=0.2",
            f"paths.cache_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    noisy = [line for line in console if any(n in line for n in THIRD_PARTY_NOISE)]
    assert noisy == [], noisy[:5]
    assert len(console) <= 60, console
    rounds = [line for line in console if re.match(r"^\W\s+[12]\s+\W", line)]  # table rows
    assert len(rounds) == 2 and not any(re.search(r"\d\.\d{5,}", r) for r in rounds), rounds
    log = (tmp_path / "run" / "run.log").read_text()
    assert "flwr" in log or "INFO :" in log  # Flower's lines went to the run's log, not nowhere
