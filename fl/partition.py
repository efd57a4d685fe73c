"""Split a training log into federated clients, reproducibly by seed.

A :class:`Partition` says which part of an :class:`~ranking.data.Interactions` log each client
owns. Two kinds of ownership exist:

* ``unit="users"``: every client owns a set of (dense) user ids and all of their interactions
  (:func:`one_user_per_client`, :func:`users_per_client`, :func:`dirichlet`);
* ``unit="rows"``: every client owns a set of row indices of the log it was built from
  (:func:`by_time`, where each client is one period of time).

Only users with at least one interaction in the log are assigned to clients (a user with no
training data has nothing to train on). The partition table is plain JSON (:meth:`Partition.save`)
so that it can be stored with a run and reloaded exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.errors import ConfigError, DataError
from encoders.storage import atomic_write_text
from ranking.data import Interactions

__all__ = [
    "PARTITION_KINDS",
    "Partition",
    "by_time",
    "dirichlet",
    "dominant_categories",
    "make_partition",
    "one_user_per_client",
    "users_per_client",
]

FORMAT_VERSION = 1
_UNITS = ("users", "rows")


@dataclass(frozen=True, eq=False)
class Partition:
    """Which users (or rows) of an interaction log each client owns.

    Attributes
    ----------
    kind:
        The scheme that built the partition (``"one_user_per_client"``, ``"users_per_client"``,
        ``"dirichlet"`` or ``"by_time"``).
    unit:
        ``"users"``: ``members[c]`` holds dense user ids; ``"rows"``: row indices of the log.
    members:
        One sorted ``int64`` array per client; the arrays are disjoint.
    source_size:
        Number of users (``unit="users"``) or rows (``unit="rows"``) of the log the partition was
        built from; used to check that :meth:`client_interactions` is given the same log.
    seed:
        Seed the partition was drawn with (``None`` for deterministic schemes).
    params:
        The scheme's parameters (JSON-serialisable).
    client_info:
        Optional per-client metadata (e.g. the time span of a time slice), one dict per client,
        included in :meth:`to_table`.
    """

    kind: str
    unit: str
    members: tuple[np.ndarray, ...]
    source_size: int
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    client_info: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.unit not in _UNITS:
            raise ConfigError(f"partition unit must be one of {_UNITS}, got {self.unit!r}")
        members = tuple(np.sort(np.asarray(m, dtype=np.int64).reshape(-1)) for m in self.members)
        object.__setattr__(self, "members", members)
        if self.client_info and len(self.client_info) != len(members):
            raise DataError(
                f"partition has {len(members)} clients but {len(self.client_info)} client_info rows"
            )
        if members:
            flat = np.concatenate(members)
            if len(flat) and (flat.min() < 0 or flat.max() >= self.source_size):
                raise DataError(f"partition {self.unit} must lie in 0..{self.source_size - 1}")
            if len(np.unique(flat)) != len(flat):
                raise DataError(
                    f"partition clients are not disjoint: some {self.unit} appear twice"
                )

    # ----------------------------------------------------------------------------------------
    # Queries
    # ----------------------------------------------------------------------------------------

    @property
    def n_clients(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        return self.n_clients

    def _check_client(self, client_id: int) -> int:
        cid = int(client_id)
        if not 0 <= cid < self.n_clients:
            raise ConfigError(f"client id {client_id} outside 0..{self.n_clients - 1}")
        return cid

    def client_members(self, client_id: int) -> np.ndarray:
        """The user ids (or row indices) client ``client_id`` owns."""
        return self.members[self._check_client(client_id)]

    def client_rows(self, interactions: Interactions, client_id: int) -> np.ndarray:
        """Row indices of ``interactions`` owned by client ``client_id`` (sorted)."""
        cid = self._check_client(client_id)
        self._check_source(interactions)
        own = self.members[cid]
        if self.unit == "rows":
            return own
        # the log is sorted by user, so each user's rows are one contiguous run
        starts = np.searchsorted(interactions.user, own, side="left")
        ends = np.searchsorted(interactions.user, own, side="right")
        lengths = ends - starts
        if not lengths.sum():
            return np.empty(0, dtype=np.int64)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return (np.arange(lengths.sum(), dtype=np.int64) + offsets).astype(np.int64)

    def client_interactions(self, interactions: Interactions, client_id: int) -> Interactions:
        """The part of ``interactions`` owned by client ``client_id``.

        ``interactions`` must be the log the partition was built from for ``unit="rows"``; for
        ``unit="users"`` any log over the same user id space works (e.g. the validation targets).
        """
        return interactions.take(self.client_rows(interactions, client_id))

    def client_of_user(self) -> np.ndarray:
        """``int64 [source_size]``: the client owning each user, ``-1`` for unassigned users."""
        if self.unit != "users":
            raise ConfigError(f"client_of_user needs a user partition, this one is by {self.unit}")
        out = np.full(self.source_size, -1, dtype=np.int64)
        for cid, own in enumerate(self.members):
            out[own] = cid
        return out

    def _check_source(self, interactions: Interactions) -> None:
        size = interactions.n_users if self.unit == "users" else len(interactions)
        if size != self.source_size:
            what = "users" if self.unit == "users" else "rows"
            raise DataError(
                f"the partition was built from a log with {self.source_size} {what}, "
                f"this one has {size}"
            )

    # ----------------------------------------------------------------------------------------
    # Table and persistence
    # ----------------------------------------------------------------------------------------

    def to_table(self) -> list[dict[str, Any]]:
        """One JSON-friendly row per client: ``client``, ``size`` and the member ids."""
        rows = []
        for cid, own in enumerate(self.members):
            row: dict[str, Any] = {"client": cid, "size": len(own), self.unit: own.tolist()}
            if self.client_info:
                row.update(self.client_info[cid])
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """The whole partition (header and table) as a JSON-serialisable dict."""
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "unit": self.unit,
            "source_size": self.source_size,
            "seed": self.seed,
            "params": self.params,
            "clients": self.to_table(),
        }

    def save(self, path: str | Path) -> None:
        """Write the partition as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Partition:
        """Read a partition written by :meth:`save`; raises :class:`DataError` on a bad file."""
        path = Path(path)
        try:
            blob = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError("partition file not found", path=path) from None
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read partition JSON: {exc}", path=path) from None
        try:
            return cls.from_json(blob)
        except DataError as exc:
            raise DataError(str(exc), path=path) from None

    @classmethod
    def from_json(cls, blob: Any) -> Partition:
        """Inverse of :meth:`to_json`."""
        if not isinstance(blob, dict):
            raise DataError("a partition must be a JSON object")
        if blob.get("format") != FORMAT_VERSION:
            raise DataError(
                f"unsupported partition format {blob.get('format')!r}, expected {FORMAT_VERSION}"
            )
        for key in ("kind", "unit", "source_size", "clients"):
            if key not in blob:
                raise DataError(f"partition lacks the field {key!r}")
        unit = blob["unit"]
        if unit not in _UNITS:
            raise DataError(f"partition unit must be one of {_UNITS}, got {unit!r}")
        members = []
        infos = []
        for i, row in enumerate(blob["clients"]):
            if not isinstance(row, dict) or row.get("client") != i or unit not in row:
                raise DataError(
                    f"partition table row {i} is malformed (expected client {i} with {unit!r})"
                )
            members.append(np.asarray(row[unit], dtype=np.int64))
            infos.append({k: v for k, v in row.items() if k not in ("client", "size", unit)})
        has_info = any(infos)
        return cls(
            kind=str(blob["kind"]),
            unit=unit,
            members=tuple(members),
            source_size=int(blob["source_size"]),
            seed=blob.get("seed"),
            params=dict(blob.get("params") or {}),
            client_info=tuple(infos) if has_info else (),
        )


# --------------------------------------------------------------------------------------------
# Schemes
# --------------------------------------------------------------------------------------------


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
