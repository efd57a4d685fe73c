"""The partition schemes: how a training log is split into federated clients, by seed.

* ``unit="users"``: every client owns a set of (dense) user ids and all of their interactions
  (:func:`one_user_per_client`, :func:`users_per_client`, :func:`dirichlet`);
* ``unit="rows"``: every client owns a set of row indices of the log it was built from
  (:func:`by_time`, where each client is one period of time).

Only users with at least one interaction in the log are assigned to clients (a user with no
training data has nothing to train on). :func:`make_partition` builds a scheme by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from encoders.errors import ConfigError, DataError
from fl.partition.table import Partition
from ranking.data.interactions import Interactions

__all__ = [
    "PARTITION_KINDS",
    "by_time",
    "dirichlet",
    "dominant_categories",
    "make_partition",
    "one_user_per_client",
    "users_per_client",
]


def _active_users(interactions: Interactions) -> np.ndarray:
    if len(interactions) == 0:
        raise DataError("cannot partition an empty interaction log")
    return np.unique(interactions.user).astype(np.int64)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def one_user_per_client(interactions: Interactions, *, seed: int | None = None) -> Partition:
    """Cross-device partition: client ``c`` is the ``c``-th active user (in dense id order).

    ``seed`` is accepted for a uniform interface and recorded, but the result does not depend on it.
    """
    users = _active_users(interactions)
    return Partition(
        kind="one_user_per_client",
        unit="users",
        members=tuple(users[i : i + 1] for i in range(len(users))),
        source_size=interactions.n_users,
        seed=seed,
    )


def users_per_client(interactions: Interactions, k: int, *, seed: int = 0) -> Partition:
    """Groups of ``k`` users per client; users are shuffled by ``seed`` first.

    The last client holds the remaining ``n_users % k`` users when ``k`` does not divide the number
    of active users.
    """
    k = _positive_int("k", k)
    users = _active_users(interactions)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(users)
    n_clients = math.ceil(len(shuffled) / k)
    return Partition(
        kind="users_per_client",
        unit="users",
        members=tuple(shuffled[i * k : (i + 1) * k] for i in range(n_clients)),
        source_size=interactions.n_users,
        seed=seed,
        params={"k": k},
    )


def dominant_categories(interactions: Interactions, categories: np.ndarray) -> np.ndarray:
    """``int64 [n_users]``: each user's most frequent item category.

    Items of unknown category (``-1``) are ignored unless a user has nothing else, in which case the
    user's category is ``-1``; ties go to the smallest category code. Users without interactions
    get ``-1``.
    """
    categories = np.asarray(categories)
    if categories.ndim != 1 or len(categories) != interactions.n_items:
        raise DataError(
            f"categories must be a 1-D array with one code per item ({interactions.n_items}), "
            f"got shape {categories.shape}"
        )
    cat = categories.astype(np.int64)[interactions.item]
    user = interactions.user.astype(np.int64)
    out = np.full(interactions.n_users, -1, dtype=np.int64)
    if not len(cat):
        return out
    known = cat >= 0
    # users with only unknown-category items keep -1; the rest vote among known categories
    width = int(cat.max()) + 2
    keys, counts = np.unique(user[known] * width + cat[known], return_counts=True)
    key_user, key_cat = keys // width, keys % width
    # per user: highest count first, then smallest category
    order = np.lexsort((key_cat, -counts, key_user))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key_user[order][1:] != key_user[order][:-1]
    winners = order[first]
    out[key_user[winners]] = key_cat[winners]
    return out


def dirichlet(
    interactions: Interactions,
    alpha: float,
    n_clients: int,
    categories: np.ndarray,
    *,
    seed: int = 0,
) -> Partition:
    """Non-IID label-skew partition over item categories.

    Each active user gets a dominant category (:func:`dominant_categories`, from the catalog's
    ``category`` array). For every category the users holding it are shuffled and spread over the
    ``n_clients`` clients with proportions drawn from ``Dirichlet(alpha, ..., alpha)``: a small
    ``alpha`` concentrates a category on few clients (strong skew), a large one spreads it evenly.
    Clients left empty then receive one user taken at random from the currently largest client,
    so every client ends with at least one user.

    Parameters
    ----------
    interactions:
        The training log.
    alpha:
        Dirichlet concentration, ``> 0``.
    n_clients:
        Number of clients, at most the number of active users.
    categories:
        Category code per item (``Catalog.category``), ``-1`` for unknown.
    seed:
        Seed of the shuffles and the Dirichlet draws.
    """
    try:
        alpha_f = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a positive number, got {alpha!r}") from None
    if not (math.isfinite(alpha_f) and alpha_f > 0):
        raise ConfigError(f"alpha must be a positive finite number, got {alpha!r}")
    n_clients = _positive_int("n_clients", n_clients)
    if categories is None:
        raise ConfigError("dirichlet partitioning needs the per-item categories (Catalog.category)")
    users = _active_users(interactions)
    if n_clients > len(users):
        raise ConfigError(
            f"n_clients={n_clients} exceeds the number of active users ({len(users)})"
        )
    dominant = dominant_categories(interactions, categories)[users]
    rng = np.random.default_rng(seed)
    buckets: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for cat in np.unique(dominant).tolist():
        group = rng.permutation(users[dominant == cat])
        proportions = rng.dirichlet(np.full(n_clients, alpha_f))
        cuts = np.floor(np.cumsum(proportions)[:-1] * len(group)).astype(np.int64)
        for cid, part in enumerate(np.split(group, cuts)):
            if len(part):
                buckets[cid].append(part)
    members = [np.concatenate(b) if b else np.empty(0, dtype=np.int64) for b in buckets]
    for cid in range(n_clients):
        if len(members[cid]) == 0:
            donor = int(np.argmax([len(m) for m in members]))
            pick = int(rng.integers(len(members[donor])))
            members[cid] = members[donor][pick : pick + 1]
            members[donor] = np.delete(members[donor], pick)
    return Partition(
        kind="dirichlet",
        unit="users",
        members=tuple(members),
        source_size=interactions.n_users,
        seed=seed,
        params={"alpha": alpha_f, "n_clients": n_clients},
    )


def by_time(interactions: Interactions, n_clients: int, *, seed: int | None = None) -> Partition:
    """Time slices: client ``c`` owns the interactions of the ``c``-th timestamp quantile.

    Cut points are placed at the ``c / n_clients`` quantiles of the events and moved back to the
    start of their run of equal timestamps, so events at one instant always share a client. Each
    client's time span is recorded as ``t_start`` / ``t_end`` (inclusive) in its table row.
    ``seed`` is recorded only (the scheme is deterministic).
    """
    n_clients = _positive_int("n_clients", n_clients)
    n = len(interactions)
    if n == 0:
        raise DataError("cannot partition an empty interaction log")
    ts = interactions.timestamp
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    targets = np.round(np.arange(1, n_clients) * n / n_clients).astype(np.int64)
    targets = np.clip(targets, 0, n - 1)
    cuts = np.searchsorted(sorted_ts, sorted_ts[targets], side="left")
    bounds = np.concatenate([[0], cuts, [n]])
    if np.any(np.diff(bounds) <= 0):
        raise DataError(
            f"cannot cut {n} events with {len(np.unique(ts))} distinct timestamps into "
            f"{n_clients} non-empty time slices"
        )
    members = []
    info = []
    for c in range(n_clients):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        members.append(order[lo:hi])
        info.append({"t_start": float(sorted_ts[lo]), "t_end": float(sorted_ts[hi - 1])})
    return Partition(
        kind="by_time",
        unit="rows",
        members=tuple(members),
        source_size=n,
        seed=seed,
        params={"n_clients": n_clients},
        client_info=tuple(info),
    )


_SCHEMES: dict[str, tuple[Callable[..., Partition], frozenset[str], frozenset[str]]] = {
    # kind: (function, required params, optional params)
    "one_user_per_client": (one_user_per_client, frozenset(), frozenset()),
    "users_per_client": (users_per_client, frozenset({"k"}), frozenset()),
    "dirichlet": (dirichlet, frozenset({"alpha", "n_clients", "categories"}), frozenset()),
    "by_time": (by_time, frozenset({"n_clients"}), frozenset()),
}

PARTITION_KINDS: tuple[str, ...] = tuple(_SCHEMES)
"""The names :func:`make_partition` accepts."""


def make_partition(
    kind: str, interactions: Interactions, *, seed: int = 0, **params: Any
) -> Partition:
    """Build a partition by scheme name.

    Parameters
    ----------
    kind:
        One of :data:`PARTITION_KINDS`.
    interactions:
        The training log to partition.
    seed:
        Seed for the random schemes.
    **params:
        The scheme's parameters: ``k`` (``users_per_client``); ``alpha``, ``n_clients``,
        ``categories`` (``dirichlet``); ``n_clients`` (``by_time``).

    Raises
    ------
    ConfigError
        On an unknown kind, a missing or unexpected parameter, or an invalid value.
    """
    if kind not in _SCHEMES:
        raise ConfigError(
            f"unknown partition kind {kind!r}; expected one of {', '.join(PARTITION_KINDS)}"
        )
    fn, required, optional = _SCHEMES[kind]
    missing = sorted(required - params.keys())
    if missing:
        raise ConfigError(f"partition {kind!r} needs parameter(s) {', '.join(missing)}")
    extra = sorted(params.keys() - required - optional)
    if extra:
        raise ConfigError(f"partition {kind!r} does not take parameter(s) {', '.join(extra)}")
    return fn(interactions, seed=seed, **params)
