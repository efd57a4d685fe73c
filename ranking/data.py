"""The one data model: an item catalog, an interaction log, splits and sequence batches.

Conventions
-----------
* Items and users have **dense ids** ``0 .. n-1``. The external ids (as read from a file) are kept in
  ``Catalog.ids`` and ``Interactions.user_ids`` so that results can be mapped back.
* Interactions are kept **sorted by (user, timestamp, original order)**; every constructor that
  builds an :class:`Interactions` sorts it, so "the user's last event" is always well defined.
* Padded sequence batches hold ``item + 1`` and use ``0`` (:data:`PAD`) as padding, so an embedding
  table for a sequence model has ``n_items + 1`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ranking.errors import DataError

PAD = 0
"""Padding value of :func:`pad_left` batches (items are shifted by +1)."""


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items with dense ids ``0 .. n_items-1``.

    Attributes
    ----------
    ids:
        External item ids (strings), indexed by dense id.
    text:
        Item text (title, genres, description) used by text encoders.
    category:
        Category code per item (``-1`` when unknown), indexing ``category_names``.
    category_names:
        Names of the category codes.
    attributes:
        Further per-item columns (numeric or string arrays of length ``n_items``).
    available:
        Whether an item may be recommended now.
    created_at:
        Time (same unit as interaction timestamps) at which the item entered the catalog.
    image_paths:
        Optional path per item (``""`` where an item has none).
    image_renderer:
        Optional picklable callable ``(catalog, item) -> PIL.Image`` that draws images lazily
        (the synthetic world uses it). Takes precedence over ``image_paths``.
    """

    ids: np.ndarray
    text: np.ndarray
    category: np.ndarray
    category_names: tuple[str, ...]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    available: np.ndarray | None = None
    created_at: np.ndarray | None = None
    image_paths: np.ndarray | None = None
    image_renderer: Callable[[Catalog, int], Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=str))
        object.__setattr__(self, "text", np.asarray(self.text, dtype=str))
        object.__setattr__(self, "category", np.asarray(self.category, dtype=np.int32))
        if self.available is None:
            object.__setattr__(self, "available", np.ones(n, dtype=bool))
        if self.created_at is None:
            object.__setattr__(self, "created_at", np.zeros(n, dtype=np.float64))
        object.__setattr__(self, "available", np.asarray(self.available, dtype=bool))
        object.__setattr__(self, "created_at", np.asarray(self.created_at, dtype=np.float64))
        if self.image_paths is not None:
            object.__setattr__(self, "image_paths", np.asarray(self.image_paths, dtype=str))
        self._check()

    def _check(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise DataError("the catalog is empty; expected at least one item")
        columns: dict[str, np.ndarray | None] = {
            "text": self.text,
            "category": self.category,
            "available": self.available,
            "created_at": self.created_at,
            "image_paths": self.image_paths,
            **{f"attributes.{k}": v for k, v in self.attributes.items()},
        }
        for name, col in columns.items():
            if col is not None and len(col) != n:
                raise DataError(f"catalog column has {len(col)} rows, expected {n}", column=name)
        if len(np.unique(self.ids)) != n:
            raise DataError("catalog item ids are not unique", column="ids")
        bad = (self.category < -1) | (self.category >= len(self.category_names))
        if bad.any():
            raise DataError(
                f"category code {int(self.category[bad][0])} outside 0..{len(self.category_names) - 1}",
                column="category",
            )

    @property
    def n_items(self) -> int:
        return len(self.ids)

    def index_of(self, external_ids: Sequence[str] | np.ndarray, *, source: str | None = None) -> np.ndarray:
        """Dense ids for external ids; raises :class:`DataError` naming the first unknown id."""
        lookup = {item_id: i for i, item_id in enumerate(self.ids.tolist())}
        ext = np.asarray(external_ids, dtype=str)
        out = np.empty(len(ext), dtype=np.int32)
        for row, item_id in enumerate(ext.tolist()):
            dense = lookup.get(item_id)
            if dense is None:
                raise DataError(f"unknown item id {item_id!r} (not in the catalog)", path=source, line=row + 1)
            out[row] = dense
        return out

    def image(self, item: int) -> Any:
        """The item's image as a PIL image, or ``None`` if it has none."""
        if self.image_renderer is not None:
            return self.image_renderer(self, int(item))
        if self.image_paths is not None and self.image_paths[item]:
            from PIL import Image

            with Image.open(self.image_paths[item]) as img:
                return img.convert("RGB")
        return None

    def take(self, items: np.ndarray) -> Catalog:
        """A catalog restricted to ``items`` (in that order), re-densified."""
        items = np.asarray(items)
        return replace(
            self,
            ids=self.ids[items],
            text=self.text[items],
            category=self.category[items],
            attributes={k: v[items] for k, v in self.attributes.items()},
            available=self.available[items],
            created_at=self.created_at[items],
            image_paths=None if self.image_paths is None else self.image_paths[items],
        )


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


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
                raise DataError(f"interaction column has {len(col)} rows, expected {n}", column=name)
        if n and (self.user.min() < 0 or self.user.max() >= len(self.user_ids)):
            raise DataError(f"user ids must lie in 0..{len(self.user_ids) - 1}", column="user")
        if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
            raise DataError(f"item ids must lie in 0..{self.n_items - 1}", column="item")
        if not np.all(np.isfinite(self.timestamp)):
            raise DataError("timestamps must be finite numbers", column="timestamp")
        if self.event is not None and n and (self.event.min() < 0 or self.event.max() >= len(self.event_names)):
            raise DataError(f"event codes must lie in 0..{len(self.event_names) - 1}", column="event")
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
        return UserSequences(indptr=indptr, items=self.item.copy(), timestamps=self.timestamp.copy())

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


@dataclass(frozen=True, eq=False)
class Dataset:
    """A catalog plus the interaction log over it."""

    name: str
    catalog: Catalog
    interactions: Interactions

    def __post_init__(self) -> None:
        if self.interactions.n_items != self.catalog.n_items:
            raise DataError(
                f"interactions index {self.interactions.n_items} items but the catalog has "
                f"{self.catalog.n_items}"
            )
        if len(self.interactions) == 0:
            raise DataError(f"dataset {self.name!r} has no interactions; expected at least one")

    def summary(self) -> dict[str, Any]:
        """Counts describing the dataset, for tables and logs."""
        inter = self.interactions
        n_active_items = int((inter.item_counts() > 0).sum())
        lengths = inter.sequences().lengths
        return {
            "dataset": self.name,
            "users": inter.n_users,
            "items": self.catalog.n_items,
            "interactions": len(inter),
            "active_items": n_active_items,
            "density": len(inter) / max(1, inter.n_users * self.catalog.n_items),
            "mean_seq_len": float(lengths.mean()) if len(lengths) else 0.0,
        }


def build_interactions(
    user_raw: Sequence[str] | np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    n_items: int,
    **columns: Any,
) -> Interactions:
    """Interactions from external user ids, densified in sorted order of the external ids."""
    user_ids, user = np.unique(np.asarray(user_raw, dtype=str), return_inverse=True)
    return Interactions(user=user, item=item, timestamp=timestamp, user_ids=user_ids, n_items=n_items, **columns)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    """Train / validation / test interactions over the same id spaces.

    ``valid`` and ``test`` hold the *targets*. The history a model may see when predicting a
    target is given by :meth:`history`.
    """

    kind: str
    train: Interactions
    valid: Interactions
    test: Interactions

    def history(self, stage: str) -> Interactions:
        """Everything a model may see before predicting ``stage`` ("valid" or "test") targets."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return self.train.concat(self.valid)
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def targets(self, stage: str) -> Interactions:
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")


def leave_one_out(interactions: Interactions, min_len: int = 3) -> Split:
    """Leave-one-out split as in SASRec / BERT4Rec.

    For each user with at least ``min_len`` (default 3) interactions the last one is the test
    target and the second-to-last the validation target; everything earlier is training data.
    Users with fewer interactions keep all of them in training and are not evaluated.
    """
    if min_len < 3:
        raise ValueError("leave-one-out needs min_len >= 3 (one train, one valid, one test item)")
    seqs = interactions.sequences()
    lengths = seqs.lengths
    eligible = lengths >= min_len
    ends = seqs.indptr[1:]
    test_rows = (ends - 1)[eligible]
    valid_rows = (ends - 2)[eligible]
    role = np.zeros(len(interactions), dtype=np.int8)
    role[valid_rows] = 1
    role[test_rows] = 2
    return Split(
        kind="leave_one_out",
        train=interactions.take(role == 0),
        valid=interactions.take(role == 1),
        test=interactions.take(role == 2),
    )


def temporal_split(interactions: Interactions, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global temporal split: the last ``test_fraction`` of events (by time) are test targets,
    the ``valid_fraction`` before them validation targets, everything earlier training data.

    The cut points are timestamps, so all events at the same instant land in the same part.
    """
    if not (0 <= valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError("need 0 <= valid_fraction, 0 < test_fraction and their sum < 1")
    ts = interactions.timestamp
    t_valid = np.quantile(ts, 1.0 - valid_fraction - test_fraction)
    t_test = np.quantile(ts, 1.0 - test_fraction)
    return Split(
        kind="temporal",
        train=interactions.take(ts < t_valid),
        valid=interactions.take((ts >= t_valid) & (ts < t_test)),
        test=interactions.take(ts >= t_test),
    )


# --------------------------------------------------------------------------------------------
# Sequence batches
# --------------------------------------------------------------------------------------------


def pad_left(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Left-pad (with :data:`PAD`) and left-truncate sequences into an ``int64 [B, max_len]`` array.

    Items are shifted by +1 so that 0 is free for padding; the most recent ``max_len`` items are
    kept, right-aligned.
    """
    out = np.full((len(sequences), max_len), PAD, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq)[-max_len:] if max_len else np.empty(0, dtype=np.int64)
        if len(tail):
            out[row, max_len - len(tail) :] = tail + 1
    return out


def sequence_windows(
    sequences: UserSequences, max_len: int, *, cover_history: bool = True, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training windows: ``(inputs, targets)``, both padded ``[N, max_len]``.

    ``targets[:, t]`` is the item following ``inputs[:, t]`` (PAD where there is none). With
    ``cover_history=False`` each user contributes one window over the most recent ``max_len + 1``
    items (the SASRec protocol). With ``cover_history=True`` further windows, ending every
    ``max_len`` items earlier, cover the whole history, so long histories are not thrown away.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    users = np.arange(len(sequences)) if users is None else np.asarray(users)
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for u in users.tolist():
        seq = sequences[u]
        n = len(seq)
        if n < 2:
            continue
        end = n
        while end >= 2:
            window = seq[max(0, end - max_len - 1) : end]
            inputs.append(window[:-1])
            targets.append(window[1:])
            if not cover_history:
                break
            end -= max_len
    return pad_left(inputs, max_len), pad_left(targets, max_len)


def holdout_users(interactions: Interactions, fraction: float, seed: int = 0, min_len: int = 3) -> tuple[Interactions, Split]:
    """Hold out a random ``fraction`` of users for evaluation only.

    Returns ``(train, heldout)``: ``train`` holds every event of the other users (what clients or a
    central model train on); ``heldout`` is a leave-one-out :class:`Split` over the held-out users
    (with at least ``min_len`` events), whose ``train`` part is history for evaluation only. This is
    the protocol of federated runs, where the server evaluates on users that never trained.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    lengths = interactions.sequences().lengths
    candidates = np.flatnonzero(lengths >= min_len)
    n_out = max(1, int(round(fraction * len(candidates))))
    if len(candidates) < 2:
        raise DataError("too few users with enough interactions to hold any out")
    chosen = np.random.default_rng(seed).choice(candidates, size=min(n_out, len(candidates) - 1), replace=False)
    is_out = np.zeros(interactions.n_users, dtype=bool)
    is_out[chosen] = True
    rows_out = is_out[interactions.user]
    return interactions.take(~rows_out), leave_one_out(interactions.take(rows_out), min_len=min_len)
