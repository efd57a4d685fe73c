"""The interaction log, sorted by (user, timestamp, original order), and its per-user sequences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ranking.errors import DataError

__all__ = ["Interactions", "UserSequences", "build_interactions"]


@dataclass(frozen=True, eq=False)
class Interactions:
    """An interaction log, sorted by (user, timestamp, original order).

    ``user_ids`` (external user ids) and ``n_items`` describe the id spaces and are shared by every
    subset taken from one log, so that splits keep the same dense ids.
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    n_items: int
    session: np.ndarray | None = None
    event: np.ndarray | None = None
    event_names: tuple[str, ...] = ()
    rating: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", np.asarray(self.user, dtype=np.int32))
        object.__setattr__(self, "item", np.asarray(self.item, dtype=np.int32))
        object.__setattr__(self, "timestamp", np.asarray(self.timestamp, dtype=np.float64))
        object.__setattr__(self, "user_ids", np.asarray(self.user_ids, dtype=str))
        for name, dtype in (("session", np.int64), ("event", np.int16), ("rating", np.float32)):
            col = getattr(self, name)
            if col is not None:
                object.__setattr__(self, name, np.asarray(col, dtype=dtype))
        n = len(self.user)
        for name in ("item", "timestamp", "session", "event", "rating"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise DataError(
                    f"interaction column has {len(col)} rows, expected {n}", column=name
                )
        if n and (self.user.min() < 0 or self.user.max() >= len(self.user_ids)):
            raise DataError(f"user ids must lie in 0..{len(self.user_ids) - 1}", column="user")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise DataError(f"item ids must lie in 0..{self.n_items - 1}", column="item")
        if not np.all(np.isfinite(self.timestamp)):
            raise DataError("timestamps must be finite numbers", column="timestamp")
        if (
            self.event is not None
            and n
            and (self.event.min() < 0 or self.event.max() >= len(self.event_names))
        ):
            raise DataError(
                f"event codes must lie in 0..{len(self.event_names) - 1}", column="event"
            )
        order = np.lexsort((np.arange(n), self.timestamp, self.user))
        if n and not np.array_equal(order, np.arange(n)):
            for name in ("user", "item", "timestamp", "session", "event", "rating"):
                col = getattr(self, name)
                if col is not None:
                    object.__setattr__(self, name, col[order])

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> Interactions:
        """The rows selected by a boolean mask or an index array (order is re-sorted)."""
        return replace(
            self,
            user=self.user[rows],
            item=self.item[rows],
            timestamp=self.timestamp[rows],
            session=None if self.session is None else self.session[rows],
            event=None if self.event is None else self.event[rows],
            rating=None if self.rating is None else self.rating[rows],
        )

    def concat(self, other: Interactions) -> Interactions:
        """This log and ``other`` (same id spaces) as one sorted log."""
        if other.n_users != self.n_users or other.n_items != self.n_items:
            raise DataError("cannot concatenate interaction logs with different id spaces")

        def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else np.concatenate([a, b])

        return replace(
            self,
            user=np.concatenate([self.user, other.user]),
            item=np.concatenate([self.item, other.item]),
            timestamp=np.concatenate([self.timestamp, other.timestamp]),
            session=cat(self.session, other.session),
            event=cat(self.event, other.event),
            rating=cat(self.rating, other.rating),
        )

    def sequences(self) -> UserSequences:
        """Each user's items in time order, as a CSR structure over all users."""
        counts = np.bincount(self.user, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return UserSequences(
            indptr=indptr, items=self.item.copy(), timestamps=self.timestamp.copy()
        )

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item (length ``n_items``)."""
        return np.bincount(self.item, minlength=self.n_items)


@dataclass(frozen=True, eq=False)
class UserSequences:
    """Per-user item sequences in CSR form: user ``u`` owns ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def build_interactions(
    user_raw: Sequence[str] | np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    n_items: int,
    **columns: Any,
) -> Interactions:
    """Interactions from external user ids, densified in sorted order of the external ids."""
    user_ids, user = np.unique(np.asarray(user_raw, dtype=str), return_inverse=True)
    return Interactions(
        user=user, item=item, timestamp=timestamp, user_ids=user_ids, n_items=n_items, **columns
    )
