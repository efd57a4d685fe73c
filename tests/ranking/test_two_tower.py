"""The two-tower L1 retriever: cold-start items are found through their content."""

import numpy as np
import pytest

from ranking.data.splits import temporal_split
from ranking.two_tower import TwoTowerRetriever, l1_recall
from simulations.datasets.synthetic import generate_world


@pytest.fixture(scope="module")
def world_split():
    world = generate_world(
        n_items=240, n_users=300, cold_start_fraction=0.25, cold_start_after=0.85, seed=2
    )
    ds = world.dataset
    split = temporal_split(ds.interactions, valid_fraction=0.05, test_fraction=0.15)
    cat = ds.catalog
    codes = [cat.category] + [
        np.unique(cat.attributes[a], return_inverse=True)[1] for a in ("colour", "pattern")
    ]
    content = np.concatenate([np.eye(c.max() + 1)[c] for c in codes], axis=1)  # attribute one-hots
    cold = split.train.item_counts() == 0
    return ds, split, content, cold


def fit(ds, split, **kwargs):
    return TwoTowerRetriever(
        n_items=ds.catalog.n_items,
        dim=32,
        model={"n_blocks": 1, "max_len": 20},
        train={"epochs": 6, "max_len": 20, "n_negatives": 64, "seed": 0},
        **kwargs,
    ).fit(split.train)


def test_cold_items_are_retrieved_by_content_and_not_by_id(world_split):
    ds, split, content, cold = world_split
    assert cold[split.test.item].sum() >= 10  # enough cold targets to measure
    groups = {"cold": cold}
    by_content = l1_recall(
        fit(ds, split, text=content, use_id=False), split, ks=(50,), groups=groups
    )
    by_id = l1_recall(fit(ds, split, use_id=True), split, ks=(50,), groups=groups)
    assert by_id["cold_recall@50"] == 0.0  # an untrained ID says nothing
    assert by_content["cold_recall@50"] > 0.3


def test_a_cold_item_comes_back_for_a_session_of_its_lookalikes(world_split):
    ds, split, content, cold = world_split
    retriever = fit(ds, split, text=content, use_id=True)
    cold_item = int(np.flatnonzero(cold)[0])
    same = np.flatnonzero((content == content[cold_item]).all(axis=1) & ~cold)
    assert len(same) >= 1
    session = np.repeat(same, 3)[:10]
    ids = retriever.retrieve([session], 20)
    assert cold_item in ids[0]


def test_seen_items_never_come_back(world_split):
    ds, split, content, _ = world_split
    retriever = fit(ds, split, text=content, use_id=True)
    seqs = split.train.sequences()
    histories = [seqs[u] for u in range(20) if len(seqs[u])]
    ids = retriever.retrieve(histories, 30)
    for hist, row in zip(histories, ids, strict=True):
        assert not set(hist.tolist()) & set(row.tolist())


def test_an_id_only_retriever_indexes_only_the_items_it_has_seen(world_split, tmp_path):
    """MovieLens-style data has no content: cold items have no vector and stay out of a cosine
    index (they used to stop it with "all-zero rows"), and the saved towers reload onto it."""
    ds, split, _, cold = world_split
    retriever = fit(ds, split, use_id=True, index={"factory": "HNSW32", "normalise": True})
    _, ids = retriever.retrievable_vectors()
    assert set(ids.tolist()) == set(np.flatnonzero(~cold).tolist())
    assert retriever.index.ntotal == (~cold).sum()
    seqs = split.train.sequences()
    found = retriever.retrieve([seqs[u] for u in range(30) if len(seqs[u])], 50)
    assert not set(found[found >= 0].tolist()) & set(np.flatnonzero(cold).tolist())
    retriever.save(tmp_path / "towers.pt")
    again = TwoTowerRetriever(
        n_items=ds.catalog.n_items,
        dim=32,
        model={"n_blocks": 1, "max_len": 20},
        train={"max_len": 20},
        use_id=True,
    )
    again.load_towers(tmp_path / "towers.pt", retriever.index)
    np.testing.assert_array_equal(again.retrieve([seqs[0]], 10), retriever.retrieve([seqs[0]], 10))
