"""The ServerApp and ClientApp in Flower's Simulation Runtime: learning, resuming, rejecting."""

import json

import numpy as np
import pytest
import torch
from builders import world_settings
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from in_process_grid import server_identity

from encoders.errors import ConfigError
from fl.server_app import _decode_replies, best_round, read_rounds
from fl.settings import FederatedSettings
from fl.strategies import StrategySpec
from fl.task import build_task_network, get_state, state_scorer, task_data, to_array_record
from ranking.checkpoint import load_checkpoint
from ranking.data import pad_left
from ranking.recommender import load_recommender
from simulations.flower_sim import simulate


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("fl")
    return world_settings(
        root,
        n_items=150,
        n_users=90,
        seed=0,
        run_dir=str(root / "run"),
        num_rounds=2,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=20,
        local_epochs=3,
        lr=0.01,
        client_optimizer="adam",
        strategy={"name": "fedavg"},
        heldout_fraction=0.3,
        model={"kind": "sasrec", "model": {"hidden": 32, "n_blocks": 1}, "train": {"max_len": 20}},
    )


@pytest.fixture(scope="module")
def two_rounds(settings):
    n_clients = task_data(settings).partition.n_clients
    assert n_clients == 4
    simulate(settings, num_supernodes=n_clients)
    return read_rounds(__import__("pathlib").Path(settings.run_dir))


def test_two_rounds_with_four_clients_raise_ndcg(two_rounds):
    assert [r["round"] for r in two_rounds] == [0, 1, 2]
    assert all(r["accepted"] == 4 and r["aggregated"] for r in two_rounds[1:])
    assert two_rounds[-1]["ndcg@10"] > two_rounds[0]["ndcg@10"]
    assert two_rounds[1]["bytes_up"] > 0 and two_rounds[1]["bytes_down"] > 0


def test_partition_table_and_checkpoint_are_saved(settings, two_rounds):
    from pathlib import Path

    run_dir = Path(settings.run_dir)
    table = json.loads((run_dir / "partition.json").read_text())
    assert len(table) == 4 and sum(row["size"] for row in table) == len(
        set(task_data(settings).train.user.tolist())
    )
    assert (run_dir / "checkpoint.npz").exists() and (
        run_dir / "final_model" / "manifest.json"
    ).exists()


def test_the_best_validation_round_is_kept(settings, two_rounds):
    from pathlib import Path

    assert all("val_ndcg@10" in r for r in two_rounds)
    best = best_round(two_rounds)
    assert best["val_ndcg@10"] == max(r["val_ndcg@10"] for r in two_rounds)
    saved = load_checkpoint(Path(settings.run_dir) / "best_model")
    assert saved.meta["round"] == best["round"] and saved.spec == settings.model
    if best["round"] == 2:  # the last round's model is also the final one
        final = load_checkpoint(Path(settings.run_dir) / "final_model")
        assert all(torch.equal(final.state_dict[k], v) for k, v in saved.state_dict.items())


def test_the_server_checkpoint_scores_identically_in_the_pipeline_and_the_exporter(
    settings, two_rounds, tmp_path
):
    from pathlib import Path

    from ranking.export import export_checkpoint, load_torchscript
    from ranking.pipeline import TwoTierPipeline

    checkpoint = Path(settings.run_dir) / "best_model"
    l2 = load_recommender(checkpoint)  # what the pipeline loads
    saved = load_checkpoint(checkpoint)
    server = state_scorer(
        settings, {k: v.numpy() for k, v in saved.state_dict.items()}
    )  # the server's own evaluator
    data = task_data(settings)
    histories = [h for h in data.heldout.history("test").sequences() if len(h)][:20]
    np.testing.assert_array_equal(
        l2.score(histories, np.arange(len(histories))),
        server.score(histories, np.arange(len(histories))),
    )

    class AllItems:
        n_items = 150

        def retrieve(self, histories, k, *, exclude_seen=False):
            return np.tile(np.arange(k), (len(histories), 1))

    pipeline_scores = TwoTierPipeline(AllItems(), l2, n_candidates=150).score(
        histories, np.arange(len(histories))
    )
    np.testing.assert_allclose(
        pipeline_scores, l2.score(histories, np.arange(len(histories))), atol=1e-5, rtol=0
    )
    exported = load_torchscript(
        export_checkpoint(checkpoint, tmp_path / "m.pt", fmt="torchscript", top_k=5)
    )
    x = torch.from_numpy(pad_left(histories, settings.max_len))
    with torch.no_grad():
        scores, ids = exported(x)
    want = l2.score(histories, np.arange(len(histories)))
    np.testing.assert_allclose(
        scores.numpy(), np.take_along_axis(want, ids.numpy(), axis=1), atol=1e-4, rtol=0
    )
    np.testing.assert_allclose(scores.numpy()[:, 0], want.max(axis=1), atol=1e-4, rtol=0)


def test_best_round_prefers_the_earliest_of_equal_validation_scores():
    rows = [
        {"round": 0, "val_ndcg@10": 0.1},
        {"round": 1},
        {"round": 2, "val_ndcg@10": 0.3},
        {"round": 3, "val_ndcg@10": 0.3},
        {"round": 4, "val_ndcg@10": 0.2},
    ]
    assert best_round(rows)["round"] == 2
    assert best_round([{"round": 1}]) is None


def test_an_interrupted_run_resumes_at_the_right_round(settings, two_rounds, tmp_path):
    import shutil
    from pathlib import Path

    # a copy of the shared two-round run, so the module's other tests keep seeing two rounds
    run_dir = shutil.copytree(settings.run_dir, tmp_path / "run")
    simulate(settings.replace(num_rounds=3, run_dir=str(run_dir)), num_supernodes=4)
    rows = read_rounds(Path(run_dir))
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert rows[:3] == two_rounds  # completed rounds were not run again


def _reply(content: RecordDict, node: int) -> Message:
    """A reply from ``node`` to a round-1 train message (made under a server's identity, so the
    test does not depend on another test having run a server in this process)."""
    with server_identity():
        request = Message(
            RecordDict({"config": ConfigRecord({"server-round": 1})}),
            dst_node_id=node,
            message_type="train",
        )
        return Message(content, reply_to=request)


def test_nan_and_misshapen_updates_are_rejected_never_aggregated(settings):
    state = get_state(build_task_network(settings, 150))
    good = {k: v.copy() for k, v in state.items()}
    nan = {k: v.copy() for k, v in state.items()}
    key = next(k for k, v in nan.items() if v.dtype.kind == "f")
    nan[key].flat[0] = np.nan
    wrong_shape = {**state, key: np.zeros((3, 3), dtype=np.float32)}
    metrics = MetricRecord({"num-examples": 5, "train-loss": 1.0})
    replies = [
        _reply(RecordDict({"arrays": to_array_record(payload), "metrics": metrics}), node)
        for node, payload in ((1, good), (2, nan), (3, wrong_shape))
    ]
    accepted, dropped, rejected = _decode_replies(replies, state, settings)
    assert [r.metadata.src_node_id for r, _, _ in accepted] == [1]
    assert [r["node"] for r in rejected] == [2, 3]
    assert key in rejected[0]["reason"] and "NaN" in rejected[0]["reason"].replace("nan", "NaN")
    assert dropped == []


def test_a_reply_with_a_bad_example_count_is_rejected_with_the_count_named(settings):
    state = get_state(build_task_network(settings, 150))
    replies = [
        _reply(
            RecordDict(
                {
                    "arrays": to_array_record(state),
                    "metrics": MetricRecord({"num-examples": count, "train-loss": 1.0}),
                }
            ),
            node,
        )
        for node, count in ((1, 5.0), (2, float("nan")), (3, -2.0))
    ]
    accepted, dropped, rejected = _decode_replies(replies, state, settings)
    assert [r.metadata.src_node_id for r, _, _ in accepted] == [1]
    assert [r["node"] for r in rejected] == [2, 3]
    assert all("num-examples" in r["reason"] and "finite count" in r["reason"] for r in rejected)
    assert dropped == []


def test_settings_reject_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) fl.num_roundz"):
        FederatedSettings.from_run_config({"num-roundz": 3})
    with pytest.raises(ConfigError, match="strategy.name='fedsgd' is not known"):
        FederatedSettings.from_run_config({"strategy.name": "fedsgd"})
    with pytest.raises(ConfigError, match="fl.num_rounds: expected int, got 'many'"):
        FederatedSettings.from_run_config({"num-rounds": "many"})
    assert FederatedSettings.from_run_config({"num-rounds": "3"}, {"num-rounds": 4}).num_rounds == 4
    for bad, message in [
        ({"strategy.fedadam.tau": 0}, r"fl.strategy.tau=0"),
        ({"strategy.fedadam.beta-2": 1.0}, "fl.strategy.beta_2=1.0"),
        ({"sparse-extra-rows": -1}, "fl.sparse_extra_rows=-1"),
        ({"strategy.fedadam.momentum": 0.9}, r"strategy.fedadam.momentum"),
        ({"model.sasrec.n-layers": 2}, r"model.sasrec.n_layers"),
        ({"model.train.batch-size": -1}, r"train.batch_size=-1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            FederatedSettings.from_run_config(bad)


def test_dp_and_robust_aggregation_are_refused_where_their_guarantee_cannot_hold():
    with pytest.raises(ConfigError, match="aggregates on its own"):
        FederatedSettings.create(dp_noise_multiplier=1.0, strategy={"name": "fedmedian"})
    with pytest.raises(ConfigError, match="aggregates on its own"):
        FederatedSettings.create(robust_aggregator="krum", strategy={"name": "krum"})
    with pytest.raises(ConfigError, match="cannot be combined"):
        FederatedSettings.create(dp_noise_multiplier=1.0, robust_aggregator="median")
    with pytest.raises(ConfigError, match="assumes Poisson sampling"):
        FederatedSettings.create(dp_noise_multiplier=1.0, client_sampling="fixed")
    with pytest.raises(ConfigError, match="robust_aggregator"):
        FederatedSettings.create(robust_aggregator="geomedian")
    assert FederatedSettings.create(dp_noise_multiplier=1.0).poisson_sampling
    assert not FederatedSettings.create().poisson_sampling


def test_server_optimizers_keep_the_model_dtypes_so_later_rounds_are_accepted(settings, tmp_path):
    from pathlib import Path

    adam = settings.replace(
        run_dir=str(tmp_path / "adam"), strategy=StrategySpec(), client_optimizer="sgd", lr=0.5
    )
    simulate(adam, num_supernodes=4)
    rows = read_rounds(Path(adam.run_dir))
    assert [(r["accepted"], r["rejected"]) for r in rows[1:]] == [(4, 0), (4, 0)]


def test_row_sparse_client_sends_its_rows_plus_the_rows_that_moved_most(settings):
    from fl.client_app import rows_to_send
    from fl.task import EMBEDDING_KEYS

    (key,) = EMBEDDING_KEYS
    sparse = settings.replace(update_encoding="row-sparse", sparse_extra_rows=3)
    data = task_data(sparse)
    sequences = data.partition.client_interactions(data.train, 0).sequences()
    own = np.unique(data.partition.client_interactions(data.train, 0).item + 1)
    old = get_state(build_task_network(sparse, 150))
    new = {k: v.copy() for k, v in old.items()}
    outside = np.setdiff1d(np.arange(1, 151), own)[:5]
    new[key][outside] += np.array([5.0, 4.0, 0.5, 3.0, 0.1], dtype=np.float32)[
        :, None
    ]  # three clear winners
    new[key][0] += 9.0  # the padding row is never sent
    rows = rows_to_send(sparse, sequences, new, old)
    assert rows.tolist() == sorted(set(own.tolist()) | set(outside[[0, 1, 3]].tolist()))
    assert (
        rows_to_send(sparse.replace(sparse_extra_rows=0), sequences, new, old).tolist()
        == own.tolist()
    )


def _dp_accounting_epsilon(rate: float, sigma: float, rounds: int, delta: float) -> float:
    """Epsilon computed directly with dp-accounting: ``rounds`` Poisson-subsampled Gaussians."""
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    event = dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(sigma))
    return PLDAccountant().compose(event, rounds).get_epsilon(delta)


def test_dp_fedadam_with_row_sparse_int8_updates_accounts_every_round_across_a_resume(
    settings, tmp_path
):
    """In Flower's runtime: Poisson sampling, clipping and noise before FedAdam; every round is
    one release, also with dropped clients, and a resumed run continues the count."""
    from pathlib import Path

    dp = settings.replace(
        run_dir=str(tmp_path / "dp"),
        strategy=StrategySpec(),
        client_optimizer="sgd",
        lr=0.5,
        update_encoding="row-sparse",
        quantize="int8",
        fraction_train=0.5,
        dp_noise_multiplier=1.0,
        dp_clipping_norm=0.5,
        num_rounds=3,
        drop_fraction=0.2,
    )
    simulate(dp, num_supernodes=4)
    simulate(dp.replace(num_rounds=5), num_supernodes=4)  # resumes after round 3
    rows = [r for r in read_rounds(Path(dp.run_dir)) if r["round"] > 0]
    assert [r["round"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["aggregated"] and r["dp_release"] for r in rows)
    assert [r["dp_releases"] for r in rows] == [1, 2, 3, 4, 5]
    assert len({r["sampled"] for r in rows}) > 1  # Poisson sampling: the sample size varies
    for row in rows:
        assert row["delta"] == pytest.approx(1e-6)
        assert row["dp_accountant"] == "pld"
        assert row["epsilon"] == pytest.approx(
            _dp_accounting_epsilon(0.5, 1.0, row["round"], 1e-6), rel=1e-6
        )


def test_the_same_seed_gives_the_same_rounds_and_another_seed_other_ones(settings, tmp_path):
    """Client sampling (half the clients), local training and aggregation order follow the seed."""
    from pathlib import Path

    def rounds(seed: int, name: str) -> list[tuple]:
        run = settings.replace(run_dir=str(tmp_path / name), fraction_train=0.5, seed=seed)
        simulate(run, num_supernodes=4)
        rows = read_rounds(Path(run.run_dir))
        return [(r["round"], r.get("train_loss"), r["ndcg@10"], r.get("accepted")) for r in rows]

    first = rounds(0, "a")
    assert first == rounds(0, "b")
    assert first != rounds(1, "c")
