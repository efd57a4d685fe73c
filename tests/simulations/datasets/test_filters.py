"""Minimum-rating and k-core filters."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import build_interactions
from ranking.errors import ConfigError, DataError
from simulations.datasets.filters import k_core, min_rating


def make(
    pairs: list[tuple[str, str]], items: list[str], ratings: list[float] | None = None
) -> Dataset:
    """A dataset whose interactions are ``pairs`` in time order (timestamp = position)."""
    catalog = Catalog(
        ids=np.asarray(items),
        text=np.asarray([f"text {i}" for i in items]),
        category=np.arange(len(items)) % 2,
        category_names=("even", "odd"),
    )
    index = {item: i for i, item in enumerate(items)}
    interactions = build_interactions(
        [u for u, _ in pairs],
        np.asarray([index[i] for _, i in pairs]),
        np.arange(len(pairs), dtype=np.float64),
        len(items),
        rating=None if ratings is None else np.asarray(ratings),
    )
    return Dataset(name="toy", catalog=catalog, interactions=interactions)


def external(data: Dataset) -> dict[str, list[str]]:
    seqs = data.interactions.sequences()
    ids = data.catalog.ids
    return {u: ids[seqs[k]].tolist() for k, u in enumerate(data.interactions.user_ids.tolist())}


def test_k_core_needs_several_passes() -> None:
    # One pass drops only D (1 interaction). Then z has 1 interaction, so C-z goes, then C has
    # 1 interaction, so C-y goes. "w" is never interacted with and vanishes too.
    pairs = [("A", "x"), ("B", "x"), ("C", "y"), ("A", "y"), ("B", "y"), ("C", "z"), ("D", "z")]
    data = make(pairs, ["w", "z", "y", "x"], ratings=[1, 2, 3, 4, 5, 6, 7])
    core = k_core(data, user_k=2, item_k=2)
    assert core.interactions.user_ids.tolist() == ["A", "B"]
    assert core.catalog.ids.tolist() == ["y", "x"]  # catalog order kept, re-densified
    assert core.catalog.text.tolist() == ["text y", "text x"]
    assert core.catalog.category.tolist() == [0, 1]
    assert core.interactions.n_items == 2
    assert external(core) == {"A": ["x", "y"], "B": ["x", "y"]}
    assert core.interactions.rating.tolist() == [1.0, 4.0, 2.0, 5.0]
    assert core.interactions.timestamp.tolist() == [0.0, 3.0, 1.0, 4.0]
    # the input is untouched
    assert data.catalog.n_items == 4 and len(data.interactions) == 7


def test_k_core_asymmetric_thresholds() -> None:
    pairs = [("A", "x"), ("A", "y"), ("A", "z"), ("B", "x"), ("B", "y"), ("C", "x")]
    core = k_core(make(pairs, ["x", "y", "z"]), user_k=2, item_k=1)
    assert external(core) == {"A": ["x", "y", "z"], "B": ["x", "y"]}
    core = k_core(make(pairs, ["x", "y", "z"]), user_k=1, item_k=2)
    assert external(core) == {"A": ["x", "y"], "B": ["x", "y"], "C": ["x"]}
    assert core.catalog.ids.tolist() == ["x", "y"]


def test_k_core_that_keeps_everything_is_identity() -> None:
    pairs = [("A", "x"), ("B", "y"), ("A", "y")]
    core = k_core(make(pairs, ["x", "y"]), user_k=1, item_k=1)
    assert external(core) == {"A": ["x", "y"], "B": ["y"]}


def test_k_core_removing_everything_raises() -> None:
    with pytest.raises(DataError, match=r"k_core\(user_k=3, item_k=1\) removed every interaction"):
        k_core(make([("A", "x"), ("A", "y"), ("B", "x")], ["x", "y"]), user_k=3, item_k=1)


def test_k_core_rejects_bad_thresholds() -> None:
    with pytest.raises(ConfigError, match="user_k"):
        k_core(make([("A", "x")], ["x"]), user_k=-1, item_k=1)


def test_min_rating() -> None:
    pairs = [("A", "x"), ("A", "y"), ("B", "x"), ("C", "z")]
    data = make(pairs, ["x", "y", "z"], ratings=[5, 3, 4, 1])
    kept = min_rating(data, 4)
    assert external(kept) == {"A": ["x"], "B": ["x"]}
    assert kept.interactions.rating.tolist() == [5.0, 4.0]
    assert kept.catalog.ids.tolist() == ["x", "y", "z"]  # the catalog is kept whole
    assert kept.interactions.n_items == 3


def test_min_rating_without_ratings_raises() -> None:
    with pytest.raises(DataError, match="has no ratings"):
        min_rating(make([("A", "x")], ["x"]), 3)


def test_min_rating_removing_everything_raises() -> None:
    with pytest.raises(DataError, match="removed every interaction"):
        min_rating(make([("A", "x")], ["x"], ratings=[2]), 3)
