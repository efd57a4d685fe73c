"""Client partitions: coverage, reproducibility, skew, time slices and persistence."""

import json

import numpy as np
import pytest

from encoders.errors import ConfigError, DataError
from fl.partition.schemes import (
    PARTITION_KINDS,
    by_time,
    dirichlet,
    dominant_categories,
    make_partition,
    one_user_per_client,
    users_per_client,
)
from fl.partition.table import Partition
from ranking.data.interactions import Interactions

N_CATS = 5


def make_log(
    n_users: int = 120, n_items: int = 50, per_user: int = 8, seed: int = 0, idle: int = 0
):
    """Users mostly click items of one preferred category; the last ``idle`` users have no events."""
    rng = np.random.default_rng(seed)
    categories = np.arange(n_items) % N_CATS
    users, items, ts = [], [], []
    for u in range(n_users - idle):
        pref = u % N_CATS
        pool_pref = np.flatnonzero(categories == pref)
        for _ in range(per_user):
            pool = pool_pref if rng.random() < 0.8 else np.arange(n_items)
            users.append(u)
            items.append(int(rng.choice(pool)))
            ts.append(float(rng.integers(0, 1000)))
    log = Interactions(
        user=np.array(users),
        item=np.array(items),
        timestamp=np.array(ts),
        user_ids=[f"u{i}" for i in range(n_users)],
        n_items=n_items,
    )
    return log, categories


def assert_covers_active_users(part: Partition, log: Interactions) -> None:
    flat = np.concatenate(part.members)
    assert len(flat) == len(np.unique(flat))  # each user in exactly one client
    assert set(flat.tolist()) == set(np.unique(log.user).tolist())


def category_entropy(part: Partition, dominant: np.ndarray) -> float:
    """Mean (size-weighted) entropy of the dominant-category histogram of each client."""
    total, weight = 0.0, 0
    for own in part.members:
        counts = np.bincount(dominant[own], minlength=N_CATS).astype(float)
        p = counts[counts > 0] / counts.sum()
        total += len(own) * float(-(p * np.log(p)).sum())
        weight += len(own)
    return total / weight


def test_one_user_per_client_covers_active_users_only():
    log, _ = make_log(n_users=30, idle=3)
    part = one_user_per_client(log)
    assert part.n_clients == 27 and all(len(m) == 1 for m in part.members)
    assert_covers_active_users(part, log)
    sub = part.client_interactions(log, 4)
    assert set(sub.user.tolist()) == {4} and len(sub) == int((log.user == 4).sum())


def test_users_per_client_sizes_and_seed():
    log, _ = make_log(n_users=53)
    part = users_per_client(log, 10, seed=3)
    assert [len(m) for m in part.members] == [10, 10, 10, 10, 10, 3]
    assert_covers_active_users(part, log)
    again = users_per_client(log, 10, seed=3)
    other = users_per_client(log, 10, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(part.members, again.members, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(part.members, other.members, strict=True))


def test_client_interactions_rows_match_isin():
    log, _ = make_log(n_users=40)
    part = users_per_client(log, 7, seed=1)
    total = 0
    for cid in range(part.n_clients):
        sub = part.client_interactions(log, cid)
        expected = log.take(np.isin(log.user, part.members[cid]))
        assert np.array_equal(sub.user, expected.user) and np.array_equal(sub.item, expected.item)
        total += len(sub)
    assert total == len(log)
    with pytest.raises(ConfigError, match="client id"):
        part.client_interactions(log, part.n_clients)


def test_dominant_categories_ignores_unknown_and_breaks_ties_low():
    log = Interactions(
        user=[0, 0, 0, 1, 1, 2],
        item=[0, 1, 1, 2, 3, 4],
        timestamp=[1, 2, 3, 1, 2, 1],
        user_ids=["a", "b", "c", "d"],
        n_items=5,
    )
    cats = np.array([2, 1, -1, 3, 0])
    # user 0: cat 2 once, cat 1 twice -> 1; user 1: -1 and 3 -> 3;
    # user 2: only cat 0 -> 0; user 3: no events -> -1
    assert dominant_categories(log, cats).tolist() == [1, 3, 0, -1]
    with pytest.raises(DataError, match="one code per item"):
        dominant_categories(log, cats[:3])


def test_dirichlet_every_client_nonempty_and_reproducible():
    log, cats = make_log(n_users=60)
    part = dirichlet(log, alpha=0.01, n_clients=12, categories=cats, seed=5)
    assert part.n_clients == 12 and all(len(m) >= 1 for m in part.members)
    assert_covers_active_users(part, log)
    again = make_partition("dirichlet", log, seed=5, alpha=0.01, n_clients=12, categories=cats)
    assert all(np.array_equal(a, b) for a, b in zip(part.members, again.members, strict=True))


def test_dirichlet_small_alpha_is_more_skewed_than_large_alpha():
    log, cats = make_log(n_users=200)
    dominant = dominant_categories(log, cats)
    low = np.mean(
        [category_entropy(dirichlet(log, 0.05, 5, cats, seed=s), dominant) for s in range(3)]
    )
    high = np.mean(
        [category_entropy(dirichlet(log, 100.0, 5, cats, seed=s), dominant) for s in range(3)]
    )
    assert low < 0.6 * high
    assert high > 0.9 * np.log(N_CATS)  # large alpha: every client sees nearly all categories


def test_by_time_slices_are_ordered_disjoint_and_cover_rows():
    log, _ = make_log(n_users=50)
    part = by_time(log, 4)
    assert part.unit == "rows" and part.n_clients == 4
    flat = np.concatenate(part.members)
    assert np.array_equal(np.sort(flat), np.arange(len(log)))
    slices = [part.client_interactions(log, c) for c in range(4)]
    for earlier, later in zip(slices, slices[1:], strict=False):
        assert earlier.timestamp.max() < later.timestamp.min()  # ties never straddle a cut
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) < 0.2 * len(log)
    table = part.to_table()
    assert table[0]["t_start"] == log.timestamp.min() and table[-1]["t_end"] == log.timestamp.max()


def test_by_time_rejects_too_few_distinct_timestamps():
    log = Interactions(
        user=[0, 0, 1], item=[0, 1, 2], timestamp=[5, 5, 5], user_ids=["a", "b"], n_items=3
    )
    with pytest.raises(DataError, match="distinct timestamps"):
        by_time(log, 2)


def test_rows_partition_refuses_another_log():
    log, _ = make_log(n_users=20)
    part = by_time(log, 2)
    with pytest.raises(DataError, match="rows"):
        part.client_interactions(log.take(np.arange(10)), 0)


@pytest.mark.parametrize("kind", PARTITION_KINDS)
def test_save_load_round_trip(tmp_path, kind):
    log, cats = make_log(n_users=30)
    params = {
        "one_user_per_client": {},
        "users_per_client": {"k": 4},
        "dirichlet": {"alpha": 0.5, "n_clients": 5, "categories": cats},
        "by_time": {"n_clients": 3},
    }[kind]
    part = make_partition(kind, log, seed=7, **params)
    path = tmp_path / "run" / "partition.json"
    part.save(path)
    blob = json.loads(path.read_text())
    assert blob["kind"] == kind and len(blob["clients"]) == part.n_clients
    back = Partition.load(path)
    assert (back.kind, back.unit, back.seed, back.params) == (
        part.kind,
        part.unit,
        part.seed,
        part.params,
    )
    assert back.to_table() == part.to_table()
    for cid in range(part.n_clients):
        a, b = part.client_interactions(log, cid), back.client_interactions(log, cid)
        assert np.array_equal(a.item, b.item) and np.array_equal(a.timestamp, b.timestamp)


def test_load_bad_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(
        '{"format": 1, "kind": "x", "unit": "users", "source_size": 2, "clients": [{"client": 0, "users": [0, 0]}]}'
    )
    with pytest.raises(DataError, match="p.json.*not disjoint"):
        Partition.load(path)
    with pytest.raises(DataError, match="not found"):
        Partition.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("round_robin", {}, "unknown partition kind"),
        ("users_per_client", {}, "needs parameter"),
        ("users_per_client", {"k": 0}, "positive integer"),
        ("users_per_client", {"k": 2.5}, "positive integer"),
        ("one_user_per_client", {"k": 2}, "does not take"),
        ("dirichlet", {"alpha": 0.0, "n_clients": 2, "categories": np.zeros(50)}, "alpha"),
        ("dirichlet", {"alpha": 1.0, "n_clients": 10_000, "categories": np.zeros(50)}, "exceeds"),
        ("dirichlet", {"alpha": 1.0, "n_clients": 2, "categories": None}, "categories"),
        ("by_time", {"n_clients": -1}, "positive integer"),
    ],
)
def test_bad_kind_or_params_raise_config_error(kind, params, match):
    log, _ = make_log(n_users=20)
    with pytest.raises(ConfigError, match=match):
        make_partition(kind, log, seed=0, **params)
