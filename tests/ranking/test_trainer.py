"""The trainer: config checks, train_epochs, early stopping, determinism, checkpoints, Hydra configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import rule_log
from hydra.utils import instantiate

from ranking.data.interactions import Interactions
from ranking.data.splits import leave_one_out
from ranking.errors import ConfigError, DataError
from ranking.evaluation import Scorer, evaluate
from ranking.models import build_model
from ranking.recommender import SequenceRecommender, load_recommender
from ranking.train_config import TrainConfig
from ranking.trainer import train_epochs

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
FAST = {"batch_size": 32, "lr": 3e-3, "max_len": 12, "progress": False}


@pytest.fixture(scope="module")
def split():
    return leave_one_out(rule_log_short())


def small(kind: str = "sasrec", **train) -> SequenceRecommender:
    return SequenceRecommender(kind, model={"hidden": 16}, train={**FAST, **train})


# ---- config ------------------------------------------------------------------------------------


def test_train_config_defaults_and_checks() -> None:
    cfg = TrainConfig()
    expected = (128, 1e-3, 50, "ce", 10)
    assert (cfg.batch_size, cfg.lr, cfg.max_len, cfg.loss, cfg.patience) == expected
    assert cfg.clip_grad_norm == 1.0 and cfg.cover_history
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"unknown setting.*train\.learning_rate"):
        TrainConfig.from_mapping({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="max_len"):
        SequenceRecommender("sasrec", model={"max_len": 10}, train={"max_len": 20})
    with pytest.raises(ConfigError, match="model.kind='transformer' is not known"):
        SequenceRecommender("transformer")


# ---- train_epochs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss, sampling",
    [("ce", "uniform"), ("sampled", "uniform"), ("sampled", "popularity"), ("bce", "uniform")],
)
def test_train_epochs_reduces_the_loss_and_is_deterministic(
    loss: str, sampling: str, split
) -> None:
    cfg = TrainConfig(**FAST, loss=loss, negative_sampling=sampling, n_negatives=8)
    seqs = split.train.sequences()

    def run() -> tuple[dict, torch.nn.Module]:
        torch.manual_seed(0)
        model = build_model("sasrec", 20, hidden=16, max_len=12)
        return train_epochs(model, seqs, cfg, epochs=4, rng=np.random.default_rng(1)), model

    stats, model = run()
    assert set(stats) >= {"loss", "seconds", "n_examples", "n_targets", "epoch_losses", "steps"}
    assert stats["n_examples"] == 120 and stats["steps"] == 4 * math.ceil(120 / 32)
    assert stats["n_targets"] == int((split.train.sequences().lengths - 1).sum())
    assert len(stats["epoch_losses"]) == 4 and stats["loss"] == stats["epoch_losses"][-1]
    assert stats["epoch_losses"][-1] < stats["epoch_losses"][0]
    again, model2 = run()
    assert again["epoch_losses"] == stats["epoch_losses"]
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_epochs_without_windows_trains_nothing() -> None:
    log = Interactions(
        user=np.array([0, 1]),
        item=np.array([1, 2]),
        timestamp=np.zeros(2),
        user_ids=np.array(["a", "b"]),
        n_items=3,
    )
    model = build_model("gru4rec", 3, hidden=8)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_epochs(model, log.sequences(), TrainConfig(progress=False))
    assert stats["n_examples"] == 0 and math.isnan(stats["loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ---- fit / early stopping ----------------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch(split) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def keep(epoch: int, row: dict, rec: SequenceRecommender) -> None:
        snapshots[epoch] = {k: v.clone() for k, v in rec.network.state_dict().items()}

    # A high learning rate makes validation NDCG wobble, so the best epoch is not the last.
    rec = small("sasrec", epochs=30, patience=2, lr=0.05, clip_grad_norm=None)
    rec.fit(split.train, validation=split, callback=keep)
    history = rec.history
    values = [row["val_ndcg@10"] for row in history]
    best = int(np.argmax(values)) + 1  # first maximum
    assert rec.best_epoch == best and rec.best_metric == values[best - 1]
    assert len(history) < 30, "training should stop early"
    assert len(history) == best + 2  # exactly `patience` epochs without improvement
    assert best < len(history)
    final = rec.network.state_dict()
    for key, value in final.items():
        assert torch.equal(value, snapshots[best][key])
    assert not all(torch.equal(final[k], snapshots[len(history)][k]) for k in final)
    assert evaluate(rec, split, stage="valid")["ndcg@10"] == pytest.approx(rec.best_metric)
    assert all(row["seconds"] > 0 for row in history)


def test_fit_without_validation_runs_all_epochs_and_is_reproducible(split) -> None:
    a = small("gru4rec", epochs=3).fit(split.train)
    b = small("gru4rec", epochs=3).fit(split.train)
    assert [r["epoch"] for r in a.history] == [1, 2, 3] and a.best_epoch == 3
    assert "val_ndcg@10" not in a.history[0]
    histories = [np.array([1, 2, 3]), np.array([], dtype=np.int32), np.arange(30) % 20]
    users = np.arange(3)
    np.testing.assert_array_equal(a.score(histories, users), b.score(histories, users))


def test_scorer_protocol(split) -> None:
    rec = small("longshort", epochs=1).fit(split.train)
    assert isinstance(rec, Scorer)
    scores = rec.score([np.array([4, 5, 6]), np.array([], dtype=np.int64)], np.array([0, 1]))
    assert scores.dtype == np.float32 and scores.shape == (2, 20)
    assert np.all(scores[1] == 0)  # nothing to go on: a constant row
    with pytest.raises(RuntimeError, match="fit"):
        SequenceRecommender("sasrec").score([np.array([1])], np.array([0]))


# ---- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sasrec", "longshort"])
def test_checkpoint_round_trip_gives_identical_scores(kind: str, split, tmp_path: Path) -> None:
    content = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    rec = SequenceRecommender(
        kind, model={"hidden": 16}, train={**FAST, "epochs": 2}, content=content
    )
    rec.fit(split.train, validation=split)
    path = tmp_path / "ckpt" / "model"
    rec.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["model"]  # no temporary directory left
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "weights.pt"]
    loaded = load_recommender(path)
    assert loaded.spec == rec.spec
    assert loaded.history == rec.history and loaded.best_epoch == rec.best_epoch
    histories = [split.train.sequences()[u] for u in range(10)]
    users = np.arange(10)
    np.testing.assert_array_equal(loaded.score(histories, users), rec.score(histories, users))
    assert loaded.content is not None and torch.equal(loaded.content, torch.from_numpy(content))


def test_load_rejects_a_bad_or_corrupt_checkpoint(split, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        load_recommender(bad)
    rec = SequenceRecommender("gru", model={"hidden": 8}, train={**FAST, "epochs": 1}).fit(
        split.train
    )
    path = rec.save(tmp_path / "model")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(DataError, match="version 99"):
        load_recommender(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with open(path / "weights.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match="checksum mismatch for 'weights.pt'"):
        load_recommender(path)
    (path / "weights.pt").unlink()
    with pytest.raises(DataError, match="missing"):
        load_recommender(path)


def test_a_killed_writer_leaves_no_partial_checkpoint_and_its_temporary_is_cleaned(
    split, tmp_path: Path
) -> None:
    stale = tmp_path / ".model.999999999.abc.tmp"  # a pid that cannot be running
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    rec = SequenceRecommender("gru", model={"hidden": 8}, train={**FAST, "epochs": 1}).fit(
        split.train
    )
    rec.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ---- Hydra configs -----------------------------------------------------------------------------


def composed_model(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides)).model


@pytest.mark.parametrize(
    "name, kind",
    [("sasrec", "sasrec"), ("gru4rec", "gru4rec"), ("lstm", "gru4rec"), ("longshort", "longshort")],
)
def test_model_configs_instantiate(name: str, kind: str) -> None:
    cfg = composed_model(f"model={name}")
    lazy = instantiate(cfg)
    assert isinstance(lazy, SequenceRecommender) and lazy.kind == kind and lazy.network is None
    built = instantiate(cfg, n_items=7)
    assert built.n_items == 7
    assert built.cfg.loss == "ce" and built.cfg.max_len == 50 and built.cfg.seed == 0
    if name == "lstm":
        assert built.network.cell == "lstm"


def test_sasrec_config_is_the_klenitskiy_vasilev_protocol() -> None:
    rec = instantiate(composed_model("model=sasrec"), n_items=7)
    net = rec.network
    assert net.hidden == 64 and len(net.blocks) == 2 and net.blocks[0].n_heads == 1
    assert net.blocks[0].dropout == 0.1 and net.max_len == 50
    cfg = rec.cfg
    expected = (50, 128, 1e-3, 10, "ce")
    assert (cfg.max_len, cfg.batch_size, cfg.lr, cfg.patience, cfg.loss) == expected


def rule_log_short(n_items: int = 20, n_users: int = 120, seed: int = 0) -> Interactions:
    return rule_log(n_items, n_users, seed, lengths=(5, 14))


def test_train_group_switches_to_the_literature_protocol() -> None:
    assert instantiate(composed_model("model=sasrec"), n_items=7).cfg.cover_history is True
    literature = instantiate(composed_model("model=sasrec", "train=literature"), n_items=7).cfg
    assert (
        literature.cover_history is False and literature.max_len == 50 and literature.loss == "ce"
    )
    original = instantiate(composed_model("model=sasrec", "train=original_sasrec"), n_items=7).cfg
    assert original.loss == "bce" and original.n_negatives == 1


def test_in_batch_negatives_add_the_batch_targets_to_the_sampled_ones() -> None:
    import torch

    from ranking.trainer import batch_negatives

    sampled = torch.tensor([7, 8])
    targets = torch.tensor([[0, 3, 5], [0, 2, 3]])  # padded, item + 1
    assert batch_negatives(sampled, targets, TrainConfig()).tolist() == [7, 8]
    with_batch = batch_negatives(sampled, targets, TrainConfig(in_batch_negatives=True)).tolist()
    assert with_batch[:2] == [7, 8] and sorted(with_batch[2:]) == [1, 2, 4]


def test_plain_sgd_takes_the_steps_of_torch_sgd() -> None:
    from ranking.trainer import PlainSGD

    def trained(make_optimizer) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        optimizer = make_optimizer(model)
        data = torch.Generator().manual_seed(1)
        for _ in range(10):
            x, y = torch.randn(6, 8, generator=data), torch.randint(0, 4, (6,), generator=data)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    start = trained(lambda m: PlainSGD(m.parameters(), lr=0.0))
    reference = trained(lambda m: torch.optim.SGD(m.parameters(), lr=0.3))
    plain = trained(lambda m: PlainSGD(m.parameters(), lr=0.3))
    assert any(not torch.allclose(a, b) for a, b in zip(start, reference, strict=True))
    for ours, theirs in zip(plain, reference, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)
