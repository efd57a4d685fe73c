"""Content-initialised and frozen item tables (fl.item_table), and their place in a round."""

from pathlib import Path

import numpy as np
import pytest

from fl.item_table import (
    content_table,
    load_content_vectors,
    with_content_item_table,
    without_frozen_changes,
)
from fl.settings import FederatedSettings
from ranking.errors import ConfigError

KEY = "item_emb.ids.weight"


def _clusters(rng: np.random.Generator, n_per: int = 20, width: int = 12) -> np.ndarray:
    centres = rng.normal(size=(3, width)) * 5
    return np.concatenate([c + rng.normal(size=(n_per, width)) for c in centres])


def test_content_table_keeps_similar_items_close_at_the_random_initialisations_scale():
    rng = np.random.default_rng(0)
    vectors = _clusters(rng)
    table = content_table(vectors, 4)
    assert table.shape == (60, 4)
    assert np.linalg.norm(table, axis=1).mean() == pytest.approx(1.0)
    distances = np.linalg.norm(table[:, None] - table[None], axis=-1)
    same = np.repeat(np.arange(3), 20)
    within = distances[same[:, None] == same[None]].mean()
    across = distances[same[:, None] != same[None]].mean()
    assert within < 0.5 * across


def test_content_narrower_than_the_table_fills_the_first_columns():
    table = content_table(np.random.default_rng(1).normal(size=(30, 3)), 8)
    assert np.count_nonzero(np.abs(table[:, 3:])) == 0
    assert np.linalg.matrix_rank(table[:, :3]) == 3


def test_identical_content_vectors_are_refused():
    with pytest.raises(ConfigError, match="the same"):
        content_table(np.ones((5, 4)), 3)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 3)), r"shape \[n_items=5, C\], got \[4, 3\]"),
        (np.zeros(5), r"got \[5\]"),
        (np.array([[0.0, np.nan]] * 5), "finite"),
    ],
)
def test_bad_content_files_are_refused_naming_the_file(tmp_path, array, message):
    path = tmp_path / "content.npy"
    np.save(path, array)
    with pytest.raises(ConfigError, match=message) as info:
        load_content_vectors(path, 5)
    assert str(path) in str(info.value)


def test_a_file_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "content.npy"
    path.write_text("not numpy")
    with pytest.raises(ConfigError, match=f"{path}.*cannot read"):
        load_content_vectors(path, 5)


def test_the_content_table_fills_every_item_row_but_padding(tmp_path):
    rng = np.random.default_rng(2)
    vectors = _clusters(rng, n_per=4)
    np.save(tmp_path / "c.npy", vectors)
    state = {KEY: rng.normal(size=(13, 6)).astype(np.float32), "other": np.ones(3, np.float32)}
    state[KEY][0] = 0
    out = with_content_item_table(state, Path(tmp_path / "c.npy"))
    assert out[KEY].dtype == np.float32 and not out[KEY][0].any()
    np.testing.assert_allclose(out[KEY][1:], content_table(vectors, 6), rtol=1e-5, atol=1e-6)
    assert out["other"] is state["other"]


def test_an_update_loses_its_item_table_changes_and_rows():
    global_state = {KEY: np.zeros((4, 2), np.float32), "w": np.zeros(2, np.float32)}
    dense = {KEY: np.ones((4, 2), np.float32), "w": np.ones(2, np.float32)}
    state, touched = without_frozen_changes(global_state, (dense, {}))
    assert np.array_equal(state[KEY], global_state[KEY]) and np.array_equal(state["w"], [1, 1])
    assert touched == {}
    sparse = {KEY: np.ones((2, 2), np.float32), "w": np.ones(2, np.float32)}  # rows 1 and 3
    state, touched = without_frozen_changes(global_state, (sparse, {KEY: np.array([1, 3])}))
    assert state[KEY].shape == (0, 2) and len(touched[KEY]) == 0
    assert np.array_equal(state["w"], [1, 1])


def test_content_initialisation_and_a_warm_start_checkpoint_conflict():
    with pytest.raises(ConfigError, match="item_table_init and fl.init_checkpoint"):
        FederatedSettings.create(item_table_init="c.npy", init_checkpoint="ckpt")


def test_a_simulation_refuses_a_bad_content_file_before_starting(tmp_path):
    from builders import world_settings

    from simulations.flower_sim import simulate

    settings = world_settings(tmp_path, n_items=30, n_users=12, seed=1)
    np.save(tmp_path / "content.npy", np.zeros((29, 4)))
    for setting in ("item_table_init", "content_vectors"):
        bad = settings.replace(**{setting: str(tmp_path / "content.npy")})
        with pytest.raises(ConfigError, match=rf"fl.{setting}=.*n_items=30"):
            simulate(bad, num_supernodes=2)
