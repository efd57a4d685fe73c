"""The partition table: which users (or rows) of an interaction log each federated client owns.

The table is plain JSON (:meth:`Partition.save`) so that it can be stored with a run and reloaded
exactly. The schemes that build one are in :mod:`fl.partition.schemes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.errors import ConfigError, DataError
from encoders.storage import atomic_write_text
from ranking.data.interactions import Interactions

__all__ = ["Partition"]

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
