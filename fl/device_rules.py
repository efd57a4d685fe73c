"""What a device allows: resource caps, participation rules and local state that survives restarts.

All of it comes from the SuperNode's ``--node-config`` (so one ClientApp serves every device)::

    flower-supernode ... --node-config "data-path='/data/me.npz' state-dir='/var/lib/tandem'
        max-threads=1 max-local-steps=20 max-history=200
        participation-file='/run/tandem/status.json' max-rounds-per-day=4"

* ``max-threads``: torch intra-op threads while training; ``max-local-steps``: optimizer steps per
  round at most; ``max-history``: the most recent items kept per user of the local data.
* ``participation-file``: a JSON file the device keeps up to date, ``{"idle": bool, "charging":
  bool}``; the device trains only when idle **and** charging (a missing or unreadable file means
  "not now"). ``max-rounds-per-day``: at most that many rounds per calendar day (UTC).
* ``state-dir``: the local store (``client_state.json``, written atomically): rounds trained and
  declined, optimizer steps, rounds per day. A restarted SuperNode picks up where it was; a corrupt
  store is set aside (``.corrupt``) and a fresh one started, never a crash.

A declined round is a normal outcome: the client replies ``declined = 1`` and no weights, and the
server counts it apart from failures (``declined`` in ``rounds.jsonl``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ranking.data import Interactions
from ranking.errors import ConfigError

STATE_FILE = "client_state.json"
NODE_KEYS = {
    "max-threads",
    "max-local-steps",
    "max-history",
    "participation-file",
    "max-rounds-per-day",
    "state-dir",
}


def _positive(node: Mapping[str, Any], key: str) -> int | None:
    if key not in node:
        return None
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ConfigError(f"node-config {key}={value!r} must be a positive integer")
    if value < 1:
        raise ConfigError(f"node-config {key}={value!r} must be a positive integer")
    return int(value)


@dataclass(frozen=True)
class DeviceRules:
    max_threads: int | None = None
    max_local_steps: int | None = None
    max_history: int | None = None
    participation_file: str | None = None
    max_rounds_per_day: int | None = None
    state_dir: str | None = None

    @classmethod
    def from_node_config(cls, node: Mapping[str, Any]) -> DeviceRules:
        """The device's rules from its node config (other keys, e.g. ``data-path``, are ignored)."""
        return cls(
            max_threads=_positive(node, "max-threads"),
            max_local_steps=_positive(node, "max-local-steps"),
            max_history=_positive(node, "max-history"),
            participation_file=str(node["participation-file"])
            if "participation-file" in node
            else None,
            max_rounds_per_day=_positive(node, "max-rounds-per-day"),
            state_dir=str(node["state-dir"]) if "state-dir" in node else None,
        )

    def decline_reason(self, state: LocalState, today: str) -> str | None:
        """Why the device sits this round out (``None``: it trains)."""
        if self.participation_file is not None:
            try:
                status = json.loads(Path(self.participation_file).read_text())
                idle, charging = bool(status["idle"]), bool(status["charging"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return f"participation file {self.participation_file} unreadable ({exc})"
            if not (idle and charging):
                return f"not idle and charging (idle={idle}, charging={charging})"
        if self.max_rounds_per_day is not None:
            done = int(state.rounds_by_day.get(today, 0))
            if done >= self.max_rounds_per_day:
                return f"{done} rounds today already (max-rounds-per-day={self.max_rounds_per_day})"
        return None


@dataclass
class LocalState:
    """The device's counters, kept in ``<state-dir>/client_state.json`` (nothing without one)."""

    path: Path | None = None
    rounds_trained: int = 0
    rounds_declined: int = 0
    steps: int = 0
    last_round: int = 0
    rounds_by_day: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: str | None) -> LocalState:
        if state_dir is None:
            return cls()
        path = Path(state_dir) / STATE_FILE
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text())
            return cls(
                path,
                int(raw["rounds_trained"]),
                int(raw["rounds_declined"]),
                int(raw["steps"]),
                int(raw["last_round"]),
                {str(k): int(v) for k, v in dict(raw["rounds_by_day"]).items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            path.replace(path.with_suffix(".corrupt"))  # kept for inspection; start afresh
            return cls(path)

    def record(self, round_: int, today: str, *, steps: int = 0, declined: bool = False) -> None:
        if declined:
            self.rounds_declined += 1
        else:
            self.rounds_trained += 1
            self.steps += steps
            self.rounds_by_day[today] = self.rounds_by_day.get(today, 0) + 1
        self.last_round = round_
        self.save()

    def save(self) -> None:
        """Write atomically (a temporary file renamed over the old one)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {k: v for k, v in self.__dict__.items() if k != "path"}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)


def recent_history(interactions: Interactions, max_items: int) -> Interactions:
    """Each user's ``max_items`` most recent interactions (the log is sorted by user, then time)."""
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    from_end = np.cumsum(counts)[interactions.user] - np.arange(len(interactions.user))
    return interactions.take(from_end <= max_items)


def today_utc() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()
