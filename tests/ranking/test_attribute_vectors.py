"""Item vectors from catalog attributes: one one-hot block per categorical column."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.data.attribute_vectors import attribute_vectors, categorical_columns, main
from ranking.data.catalog import Catalog
from ranking.errors import ConfigError
from ranking.storage import save_dataset
from simulations.datasets.synthetic import generate_world


def _catalog() -> Catalog:
    return Catalog(
        ids=np.array(["i0", "i1", "i2", "i3"]),
        text=np.array(["a", "b", "c", "d"]),
        category=np.array([0, 1, -1, 1]),
        category_names=("shirt", "mug"),
        attributes={
            "colour": np.array(["red", "", "blue", "red"]),
            "popularity": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32),
        },
    )


def test_each_column_is_one_one_hot_block_and_unknown_values_are_zero():
    catalog = _catalog()
    assert categorical_columns(catalog) == ["category", "colour"]  # numeric columns are not
    vectors = attribute_vectors(catalog)
    # category: codes 0, 1 -> 2 columns; colour: blue, red -> 2 columns
    assert vectors.dtype == np.float32 and vectors.shape == (4, 4)
    assert vectors.tolist() == [
        [1, 0, 0, 1],  # category 0, red
        [0, 1, 0, 0],  # category 1, no colour
        [0, 0, 1, 0],  # no category, blue
        [0, 1, 0, 1],  # category 1, red
    ]


def test_items_sharing_a_value_share_its_column():
    world = generate_world(n_items=60, n_users=10, seed=3)
    catalog = world.dataset.catalog
    vectors = attribute_vectors(catalog, ["colour"])
    colours = np.asarray(catalog.attributes["colour"])
    same = colours[:, None] == colours[None, :]
    assert np.array_equal((vectors @ vectors.T) > 0, same)
    assert np.all(vectors.sum(axis=1) == 1)


@pytest.mark.parametrize(
    ("columns", "says"),
    [(["size"], "'size' is not in the catalog"), (["popularity"], "'popularity' holds float32")],
)
def test_a_column_that_is_missing_or_not_categorical_is_refused_by_name(columns, says):
    with pytest.raises(ConfigError, match=says):
        attribute_vectors(_catalog(), columns)


def test_the_command_writes_the_vectors_of_a_dataset_file(tmp_path):
    world = generate_world(n_items=50, n_users=10, seed=1)
    save_dataset(world.dataset, tmp_path / "data.npz")
    assert main([str(tmp_path / "data.npz"), str(tmp_path / "attrs.npy")]) == 0
    written = np.load(tmp_path / "attrs.npy")
    assert np.array_equal(written, attribute_vectors(world.dataset.catalog))
    assert written.shape[0] == 50 and np.all(written.sum(axis=1) == 4)  # 4 attributes per item
