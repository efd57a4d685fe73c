"""Every strategy x update encoding x quantisation that the settings allow, and every robust
aggregator and the DP mechanism with a server optimiser, runs two rounds of the real ServerApp
round loop and ClientApp, in process (:mod:`in_process_grid`), and moves the model."""

from pathlib import Path

import numpy as np
import pytest
from builders import world_settings
from in_process_grid import InProcessGrid, server_identity

from fl.client_app import make_client_app
from fl.robust_aggregation import AGGREGATORS
from fl.server_app import FINAL_MODEL, load_round_state, run_rounds
from fl.settings import FederatedSettings
from fl.strategies import STRATEGIES, AdaptiveSettings
from fl.task import build_task_network, get_state, task_content
from ranking.recommender import load_recommender

N_ITEMS = 80
SERVER_STEP = {"fedadam": 0.05, "fedyogi": 0.05}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return world_settings(
        tmp_path_factory.mktemp("matrix"),
        n_items=N_ITEMS,
        n_users=48,
        seed=3,
        num_rounds=2,
        fraction_train=1.0,
        partition="users_per_client",
        users_per_client=8,
        min_train_nodes=2,
        lr=0.5,
        heldout_fraction=0.3,
        sparse_extra_rows=5,
        model={"kind": "sasrec", "model": {"hidden": 16, "n_blocks": 1}, "train": {"max_len": 10}},
    )


def _run(base: FederatedSettings, tmp_path: Path, **changes) -> tuple[list, dict, dict]:
    """Two rounds: (round rows, initial state, final state)."""
    settings = base.replace(run_dir=str(tmp_path / "run"), **changes)
    grid = InProcessGrid(make_client_app(settings), n_nodes=4)
    initial = get_state(build_task_network(settings, N_ITEMS))
    with server_identity():
        rows = run_rounds(grid, settings)
    _, final = load_round_state(Path(settings.run_dir))
    return rows, initial, final


def _run_private(
    base: FederatedSettings, tmp_path: Path, strategy: str, **changes
) -> tuple[list, dict, dict]:
    """Two DP rounds (sigma 0.5, three of four clients per round, int8) under ``strategy``."""
    return _run(
        base,
        tmp_path,
        **{
            "strategy": FederatedSettings.create(strategy=_strategy(strategy)).strategy,
            "fraction_train": 0.75,
            "dp_noise_multiplier": 0.5,
            "quantize": "int8",
            **changes,
        },
    )


def _assert_moved(rows, initial, final) -> None:
    assert [r["round"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert row["aggregated"], row
        assert row["rejected"] == 0 and row["accepted"] == row["sampled"] > 0, row
    assert set(final) == set(initial)
    for key, value in final.items():
        assert value.dtype == initial[key].dtype and np.isfinite(value).all(), key
    assert any(not np.array_equal(final[k], initial[k]) for k in final)


def _strategy(name: str) -> dict:
    spec = {"name": name}
    if name in SERVER_STEP:
        spec["eta"] = SERVER_STEP[name]
    return spec


MATRIX = [
    (name, encoding, quantize)
    for name, entry in STRATEGIES.items()
    for encoding in (("dense", "row-sparse") if entry.row_sparse else ("dense",))
    for quantize in ("none", "int8")
]


@pytest.mark.parametrize(("strategy", "encoding", "quantize"), MATRIX)
def test_each_allowed_strategy_encoding_and_quantisation_runs_two_rounds(
    base, tmp_path, strategy, encoding, quantize
):
    _assert_moved(
        *_run(
            base,
            tmp_path,
            strategy=FederatedSettings.create(strategy=_strategy(strategy)).strategy,
            update_encoding=encoding,
            quantize=quantize,
        )
    )


def test_the_settings_refuse_row_sparse_updates_for_strategies_that_aggregate_alone():
    from encoders.errors import ConfigError

    for name, entry in STRATEGIES.items():
        if not entry.row_sparse:
            with pytest.raises(ConfigError, match="row-sparse"):
                FederatedSettings.create(strategy={"name": name}, update_encoding="row-sparse")


@pytest.mark.parametrize("aggregator", [a for a in AGGREGATORS if a != "none"])
@pytest.mark.parametrize("encoding", ["dense", "row-sparse"])
def test_each_robust_aggregator_feeds_fedadam_for_two_rounds(base, tmp_path, aggregator, encoding):
    _assert_moved(
        *_run(
            base,
            tmp_path,
            strategy=FederatedSettings.create(strategy=_strategy("fedadam")).strategy,
            robust_aggregator=aggregator,
            update_encoding=encoding,
            quantize="int8",
        )
    )


@pytest.mark.parametrize("encoding", ["dense", "row-sparse"])
def test_dp_feeds_a_server_optimiser_with_poisson_sampling(base, tmp_path, encoding):
    rows, initial, final = _run_private(
        base,
        tmp_path,
        "fedavgm",
        dp_clipping_norm=0.5,
        update_encoding=encoding,
    )
    assert all(r["aggregated"] and r["dp_release"] for r in rows[1:])
    assert [r["dp_releases"] for r in rows[1:]] == [1, 2]
    assert any(not np.array_equal(final[k], initial[k]) for k in final)


@pytest.mark.parametrize("encoding", ["dense", "row-sparse"])
def test_the_simulated_alie_attack_runs_against_a_robust_aggregator(base, tmp_path, encoding):
    rows, initial, final = _run(
        base,
        tmp_path,
        strategy=FederatedSettings.create(strategy=_strategy("fedadam")).strategy,
        robust_aggregator="trimmed-mean",
        robust_trim=0.25,
        byzantine_fraction=0.5,
        byzantine_mode="alie",
        update_encoding=encoding,
    )
    _assert_moved(rows, initial, final)


@pytest.mark.parametrize("ordered", [True, False])
def test_partition_ids_are_queried_once_per_node_only_when_nodes_are_ordered_by_them(
    base, tmp_path, ordered
):
    from flwr.app import MessageType

    settings = base.replace(run_dir=str(tmp_path / "run"), order_nodes_by_partition=ordered)
    grid = InProcessGrid(make_client_app(settings), n_nodes=4)
    with server_identity():
        rows = run_rounds(grid, settings)
    queries = [m for m in grid.delivered if m.metadata.message_type == MessageType.QUERY]
    assert sorted(m.metadata.dst_node_id for m in queries) == (
        sorted(grid.get_node_ids()) if ordered else []
    )
    assert all(r["aggregated"] and r["accepted"] == 4 for r in rows[1:])


def test_over_selection_samples_more_and_aggregates_the_target_when_clients_drop(base, tmp_path):
    # 4 nodes, a target of 2 a round (fraction 0.5); 2x over-selection samples all 4; a third of
    # the clients crash, and the first 2 valid replies (in node order) are aggregated
    rows, initial, final = _run(
        base, tmp_path, fraction_train=0.5, over_selection=2.0, drop_fraction=0.34
    )
    for row in rows[1:]:
        valid = row["sampled"] - row["dropped"]
        assert row["sampled"] == 4, row
        assert row["accepted"] == min(2, valid) and row["surplus"] == max(0, valid - 2), row
    assert sum(r["surplus"] for r in rows[1:]) > 0  # some valid replies were left over
    assert any(not np.array_equal(final[k], initial[k]) for k in final)
    plain, _, _ = _run(base, tmp_path / "plain", fraction_train=0.5, drop_fraction=0.34)
    assert all(r["sampled"] == 2 and r["surplus"] == 0 for r in plain[1:])


def test_over_selection_is_refused_where_the_sampling_rate_is_the_privacy_parameter():
    from encoders.errors import ConfigError

    with pytest.raises(ConfigError, match="fl.over_selection"):
        FederatedSettings.create(over_selection=1.5, client_sampling="poisson")
    with pytest.raises(ConfigError, match="over_selection"):
        FederatedSettings.create(over_selection=0.5)


@pytest.mark.parametrize("encoding", ["dense", "row-sparse"])
def test_dp_with_a_frozen_content_initialised_item_table_moves_only_the_other_layers(
    base, tmp_path, encoding
):
    from fl.item_table import content_table

    content = np.random.default_rng(4).normal(size=(N_ITEMS, 24))
    np.save(tmp_path / "content.npy", content)
    rows, _, final = _run_private(
        base,
        tmp_path,
        "fedadam",
        dp_clipping_norm=0.5,
        update_encoding=encoding,
        item_table_init=str(tmp_path / "content.npy"),
        freeze_item_table=True,
    )
    assert all(r["aggregated"] and r["dp_release"] for r in rows[1:])
    key = "item_emb.ids.weight"
    expected = content_table(content, final[key].shape[1])
    np.testing.assert_allclose(final[key][1:], expected, rtol=1e-5, atol=1e-6)
    assert not final[key][0].any()
    initial = get_state(build_task_network(base, N_ITEMS))
    assert any(not np.array_equal(final[k], initial[k]) for k in final if k != key)


def test_content_vectors_feed_the_model_and_their_projection_trains_under_dp(base, tmp_path):
    content = np.random.default_rng(5).normal(size=(N_ITEMS, 24)).astype(np.float32)
    np.save(tmp_path / "content.npy", content)
    settings = base.replace(content_vectors=str(tmp_path / "content.npy"))
    network = build_task_network(settings, N_ITEMS)
    np.testing.assert_array_equal(network.item_emb.content.numpy(), content)
    assert task_content(settings, N_ITEMS) is task_content(settings, N_ITEMS)  # read once
    rows, initial, final = _run_private(
        settings,
        tmp_path,
        "fedadam",
        update_encoding="row-sparse",
        freeze_item_table=True,
    )
    assert all(r["aggregated"] for r in rows[1:])
    key = "item_emb.content_proj.weight"
    assert key in final and not np.array_equal(final[key], initial[key])
    assert np.array_equal(final["item_emb.ids.weight"], initial["item_emb.ids.weight"])
    model = load_recommender(tmp_path / "run" / FINAL_MODEL)  # the checkpoint carries the content
    np.testing.assert_array_equal(model.network.item_emb.content.numpy(), content)


@pytest.mark.parametrize("encoding", ["dense", "row-sparse"])
def test_a_low_rank_item_residual_trains_under_dp_beside_a_frozen_table(base, tmp_path, encoding):
    settings = base.replace(
        model=base.model.replace(model={**base.model.model, "item_residual_rank": 4})
    )
    rows, initial, final = _run_private(
        settings,
        tmp_path,
        "fedadam",
        update_encoding=encoding,
        freeze_item_table=True,
    )
    assert all(r["aggregated"] and r["dp_release"] for r in rows[1:])
    assert np.array_equal(final["item_emb.ids.weight"], initial["item_emb.ids.weight"])
    rows_u, basis = final["item_emb.residual_rows.weight"], final["item_emb.residual_basis.weight"]
    assert rows_u.shape == (N_ITEMS + 1, 4) and basis.shape[1] == 4
    assert not initial["item_emb.residual_rows.weight"].any() and rows_u[1:].any()
    assert not np.array_equal(basis, initial["item_emb.residual_basis.weight"])


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_the_server_takes_the_scheduled_step(base, tmp_path, name):
    """Round 1 of a two-round warm-up steps with eta / 2: the same client updates move every
    weight half as far as with the constant step (Adam's step is linear in eta)."""
    changes: dict[str, np.ndarray] = {}
    for label, schedule in (("constant", {}), ("warm-up", {"eta_warmup_rounds": 2})):
        spec = {**_strategy(name), **schedule}
        rows, initial, final = _run(
            base,
            tmp_path / label,
            num_rounds=1,
            strategy=FederatedSettings.create(strategy=spec).strategy,
        )
        step = AdaptiveSettings(**{k: v for k, v in spec.items() if k != "name"}).eta_at(1, 1)
        assert rows[-1]["eta"] == pytest.approx(step)
        changes[label] = {k: final[k].astype(np.float64) - initial[k] for k in final}
    full, half = changes["constant"], changes["warm-up"]
    scale = max(float(np.abs(d).max()) for d in full.values())
    assert scale > 0.01  # the round moved the model
    for key, change in full.items():
        assert np.abs(half[key] - 0.5 * change).max() <= 1e-3 * scale, key
