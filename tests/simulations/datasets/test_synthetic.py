"""The synthetic world: determinism, ground truth, drift, cold start and images."""

import numpy as np
import pytest

from ranking.errors import ConfigError
from simulations.datasets.synthetic import COLOURS, generate_world, render_images, synthetic_dataset


@pytest.fixture(scope="module")
def world():
    return generate_world(n_items=300, n_users=200, seed=3)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate_world(n_items=300, n_users=200, seed=3)
    other = generate_world(n_items=300, n_users=200, seed=4)
    np.testing.assert_array_equal(again.dataset.interactions.item, world.dataset.interactions.item)
    np.testing.assert_array_equal(
        again.dataset.interactions.timestamp, world.dataset.interactions.timestamp
    )
    assert not np.array_equal(
        other.dataset.interactions.item[:50], world.dataset.interactions.item[:50]
    )


def test_titles_and_attributes_agree(world):
    cat = world.dataset.catalog
    for i in range(20):
        title = cat.text[i]
        assert cat.attributes["colour"][i] in title
        assert cat.category_names[cat.category[i]] in title
        assert cat.attributes["price_band"][i] in title


def test_images_show_the_item_colour(world):
    cat = world.dataset.catalog
    for i in range(10):
        img = np.asarray(cat.image(i))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        colour = np.array(COLOURS[str(cat.attributes["colour"][i])])
        assert (np.abs(img.astype(int) - colour).sum(axis=2) == 0).sum() >= 20  # the motif is there
    assert render_images(cat, np.arange(4)).shape == (4, 32, 32, 3)


def test_no_interaction_before_item_creation_and_cold_items_exist(world):
    inter, cat = world.dataset.interactions, world.dataset.catalog
    assert np.all(cat.created_at[inter.item] <= inter.timestamp)
    assert len(world.cold_items) == 15
    assert np.all(cat.created_at[world.cold_items] > 0)


def test_popularity_is_heavy_tailed(world):
    counts = np.sort(world.dataset.interactions.item_counts())[::-1]
    top_decile = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.3  # a Zipf-like head (a uniform world would give about 0.1)


def test_users_follow_their_true_colour_taste(world):
    inter, cat = world.dataset.interactions, world.dataset.catalog
    colour_code = world.item_codes["colour"][inter.item]
    phase = world.phase_at(inter.timestamp)
    p_true = world.tastes["colour"][phase, inter.user, colour_code]
    shuffled = np.random.default_rng(0).permutation(inter.user)
    p_other = world.tastes["colour"][phase, shuffled, colour_code]
    # Users pick colours they like: far more than other users like those colours.
    assert p_true.mean() > 1.6 * p_other.mean()
    assert cat.n_items == 300


def test_drift_changes_tastes_at_the_drift_time(world):
    taste = world.tastes["category"]
    assert taste.shape == (2, 200, world.config.n_categories)
    assert np.abs(taste[1] - taste[0]).sum(axis=1).mean() > 0.3
    t_drift = world.phase_starts[1]
    assert world.phase_at(t_drift - 1) == 0 and world.phase_at(t_drift + 1) == 1
    np.testing.assert_allclose(world.user_taste(0, t_drift + 1)["category"], taste[1, 0])


def test_sessions_mostly_stay_in_their_intent_category(world):
    inter = world.dataset.interactions
    category = world.item_codes["category"][inter.item]
    assert (category == world.session_intent[inter.session]).mean() > 0.8


def test_bad_settings_raise_config_error():
    with pytest.raises(ConfigError, match="n_categories"):
        generate_world(n_categories=99)
    with pytest.raises(ConfigError, match="unknown setting"):
        synthetic_dataset(n_itemz=10)
