"""The data model: sorting, splits, sequences and padded batches."""

import numpy as np
import pytest

from ranking.data.catalog import Catalog
from ranking.data.dataset import Dataset
from ranking.data.interactions import Interactions
from ranking.data.sequences import PAD, pad_left, sequence_windows
from ranking.data.splits import leave_one_out, temporal_split
from ranking.errors import DataError


def make_log(
    rows: list[tuple[int, int, float]], n_users: int = 3, n_items: int = 10
) -> Interactions:
    user, item, ts = (np.array(c) for c in zip(*rows, strict=True))
    return Interactions(
        user=user,
        item=item,
        timestamp=ts,
        user_ids=[f"u{i}" for i in range(n_users)],
        n_items=n_items,
    )


def test_interactions_sorted_by_user_then_time_keeping_ties_in_order():
    log = make_log([(1, 5, 2.0), (0, 3, 9.0), (1, 4, 1.0), (0, 2, 9.0), (0, 1, 1.0)])
    assert log.user.tolist() == [0, 0, 0, 1, 1]
    assert log.item.tolist() == [1, 3, 2, 4, 5]  # ties at t=9 keep file order (3 before 2)


def test_leave_one_out_boundaries():
    # user 0 has 4 events, user 1 has 3, user 2 has 2 (too short: train only)
    log = make_log(
        [
            (0, 1, 1),
            (0, 2, 2),
            (0, 3, 3),
            (0, 4, 4),
            (1, 5, 1),
            (1, 6, 2),
            (1, 7, 3),
            (2, 8, 1),
            (2, 9, 2),
        ]
    )
    split = leave_one_out(log)
    assert split.test.user.tolist() == [0, 1] and split.test.item.tolist() == [4, 7]
    assert split.valid.user.tolist() == [0, 1] and split.valid.item.tolist() == [3, 6]
    seqs = split.train.sequences()
    assert seqs[0].tolist() == [1, 2] and seqs[1].tolist() == [5] and seqs[2].tolist() == [8, 9]
    # the test history is train + valid, in time order
    assert split.history("test").sequences()[0].tolist() == [1, 2, 3]
    assert len(split.train) + len(split.valid) + len(split.test) == len(log)


def test_leave_one_out_rejects_min_len_below_three():
    with pytest.raises(ValueError, match="min_len"):
        leave_one_out(make_log([(0, 1, 1)]), min_len=2)


def test_temporal_split_cuts_by_time():
    rows = [
        (u, i, float(t)) for t, (u, i) in enumerate([(0, 1), (1, 2), (0, 3), (1, 4), (2, 5)] * 2)
    ]
    log = make_log(rows)
    split = temporal_split(log, valid_fraction=0.2, test_fraction=0.2)
    assert split.train.timestamp.max() < split.valid.timestamp.min()
    assert split.valid.timestamp.max() < split.test.timestamp.min()
    assert len(split.train) + len(split.valid) + len(split.test) == len(log)


def test_pad_left_truncates_and_shifts():
    out = pad_left([np.array([0, 1, 2, 3]), np.array([7]), np.array([], dtype=int)], max_len=3)
    assert out.tolist() == [[2, 3, 4], [PAD, PAD, 8], [PAD, PAD, PAD]]


def test_sequence_windows_cover_whole_history_without_repeating_targets():
    log = make_log([(0, i, float(i)) for i in range(7)], n_users=1)
    seqs = log.sequences()
    inputs, targets = sequence_windows(seqs, max_len=3, cover_history=True)
    flat_targets = sorted(int(t) - 1 for t in targets.ravel() if t != PAD)
    assert flat_targets == [1, 2, 3, 4, 5, 6]  # every item but the first is a target exactly once
    # the last window is the SASRec window; the next target of each input position is its successor
    assert inputs[0].tolist() == [4, 5, 6] and targets[0].tolist() == [5, 6, 7]
    only_last, _ = sequence_windows(seqs, max_len=3, cover_history=False)
    assert len(only_last) == 1


def test_catalog_checks_lengths_ids_and_categories():
    with pytest.raises(DataError, match="column 'text'"):
        Catalog(ids=["a", "b"], text=["x"], category=[0, 0], category_names=("c",))
    with pytest.raises(DataError, match="not unique"):
        Catalog(ids=["a", "a"], text=["x", "y"], category=[0, 0], category_names=("c",))
    with pytest.raises(DataError, match="category code 3"):
        Catalog(ids=["a"], text=["x"], category=[3], category_names=("c",))
    with pytest.raises(DataError, match="empty"):
        Catalog(ids=[], text=[], category=[], category_names=())


def test_catalog_index_of_names_unknown_id():
    cat = Catalog(ids=["a", "b"], text=["x", "y"], category=[-1, -1], category_names=())
    assert cat.index_of(["b", "a"]).tolist() == [1, 0]
    with pytest.raises(DataError, match=r"f\.txt, line 2: unknown item id 'zz'"):
        cat.index_of(["a", "zz"], source="f.txt")


def test_dataset_rejects_empty_log_and_mismatched_catalog():
    cat = Catalog(ids=["a", "b"], text=["x", "y"], category=[-1, -1], category_names=())
    empty = Interactions(user=[], item=[], timestamp=[], user_ids=["u"], n_items=2)
    with pytest.raises(DataError, match="no interactions"):
        Dataset(name="d", catalog=cat, interactions=empty)
    log = make_log([(0, 1, 1.0)], n_users=1, n_items=5)
    with pytest.raises(DataError, match="5 items"):
        Dataset(name="d", catalog=cat, interactions=log)


def test_interactions_reject_out_of_range_ids():
    with pytest.raises(DataError, match="column 'item'"):
        make_log([(0, 10, 1.0)], n_items=10)


def test_holdout_users_separates_training_users_from_evaluated_users():
    from ranking.data.splits import holdout_users

    rows = [(u, (u + t) % 10, float(t)) for u in range(10) for t in range(4)]
    log = make_log(rows, n_users=10, n_items=10)
    train, heldout = holdout_users(log, fraction=0.3, seed=1)
    out_users = set(heldout.test.user.tolist())
    assert len(out_users) == 3
    assert not out_users & set(train.user.tolist())  # held-out users never train
    assert len(train) + len(heldout.train) + len(heldout.valid) + len(heldout.test) == len(log)
    again, _ = holdout_users(log, fraction=0.3, seed=1)
    np.testing.assert_array_equal(again.user, train.user)
