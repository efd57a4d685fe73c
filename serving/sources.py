"""Where live events come from: one interface, two sources.

* :class:`ReplaySource` (default): a dataset's interactions in time order, paced by a speed-up
  factor (``speedup=3600``: an hour of the log per second; ``None``: as fast as read).
* :class:`RedisStreamSource`: a real broker, Redis Streams with a consumer group. Each event goes
  to one consumer of the group; an event is acknowledged (``XACK``) only after the consumer has
  handled it, and a restarted consumer first takes back its own unacknowledged events, so none is
  lost. Run ``redis-server`` with ``appendonly yes`` and ``appendfsync always`` when the no-loss
  guarantee must hold across a Redis crash too.

An event is ``{"user": str, "item": str, "ts": float, "event": str}`` with external ids, as
``POST /events`` takes it; a source yields ``(event_id, event)`` pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ranking.data import Catalog, Interactions
from ranking.errors import ConfigError, DataError

Event = dict[str, Any]


class EventSource(Protocol):
    def read(self, count: int = 100, block_ms: int = 0) -> list[tuple[str, Event]]:
        """Up to ``count`` events not handed out before (may wait up to ``block_ms``)."""

    def ack(self, ids: Sequence[str]) -> None:
        """Mark events as handled: they will not be handed out again."""


class ReplaySource:
    """A dataset's interactions replayed in time order (ties keep the log's order)."""

    def __init__(
        self, interactions: Interactions, catalog: Catalog, *, speedup: float | None = None
    ) -> None:
        if speedup is not None and speedup <= 0:
            raise ConfigError(f"replay speedup must be positive or null, got {speedup}")
        self.order = np.argsort(interactions.timestamp, kind="stable")
        self.interactions = interactions
        self.catalog = catalog
        self.speedup = speedup
        self.position = 0
        self._start: float | None = None

    def __len__(self) -> int:
        return len(self.order)

    def _event(self, row: int) -> Event:
        inter = self.interactions
        return {
            "user": str(inter.user_ids[inter.user[row]]),
            "item": str(self.catalog.ids[inter.item[row]]),
            "ts": float(inter.timestamp[row]),
            "event": "interaction",
        }

    def read(self, count: int = 100, block_ms: int = 0) -> list[tuple[str, Event]]:
        out: list[tuple[str, Event]] = []
        times = self.interactions.timestamp
        if self._start is None and len(self.order):
            self._start = time.monotonic()
        while self.position < len(self.order) and len(out) < count:
            row = int(self.order[self.position])
            if self.speedup is not None:
                due = (times[row] - times[self.order[0]]) / self.speedup
                wait = due - (time.monotonic() - (self._start or 0.0))
                if wait > 0:
                    if out or wait * 1e3 > block_ms:
                        break
                    time.sleep(wait)
            out.append((str(self.position), self._event(row)))
            self.position += 1
        return out

    def ack(self, ids: Sequence[str]) -> None:
        pass  # a replay is re-read from the dataset: nothing to remember

    def __iter__(self) -> Iterator[tuple[str, Event]]:
        while self.position < len(self.order):
            yield from self.read(1000, block_ms=60_000)


class RedisStreamSource:
    """One consumer of a Redis Streams consumer group (the group is created when missing)."""

    FIELDS = ("user", "item", "ts", "event")

    def __init__(self, url: str, stream: str, group: str, consumer: str) -> None:
        import redis

        self._redis = redis
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.stream, self.group, self.consumer = stream, group, consumer
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise ConfigError(f"cannot create consumer group {group!r}: {exc}") from exc
        except redis.ConnectionError as exc:
            raise ConfigError(f"cannot reach Redis at {url!r}: {exc}") from exc
        self._pending_from: str | None = "0"  # None once this consumer's backlog is re-read

    @staticmethod
    def publish(client: Any, stream: str, events: Sequence[Event]) -> list[str]:
        """Append ``events`` to ``stream`` (``XADD``); returns their stream ids."""
        with client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    stream, {k: str(event[k]) for k in RedisStreamSource.FIELDS if k in event}
                )
            return list(pipe.execute())

    def _decode(self, entries: list[Any]) -> list[tuple[str, Event]]:
        out = []
        for event_id, fields in entries:
            if not fields:  # deleted from the stream while pending
                continue
            missing = [k for k in ("user", "item") if k not in fields]
            event: Event = dict(fields)
            try:
                event["ts"] = float(fields["ts"]) if "ts" in fields else None
            except ValueError:
                missing.append("ts (a number)")
            if missing:
                raise DataError(f"stream {self.stream!r} entry {event_id} lacks {missing}")
            out.append((event_id, event))
        return out

    def read(self, count: int = 100, block_ms: int = 0) -> list[tuple[str, Event]]:
        """This consumer's own unacknowledged events first (after a restart), then new ones."""
        if self._pending_from is not None:
            reply = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: self._pending_from}, count
            )
            entries = reply[0][1] if reply else []
            if entries:
                self._pending_from = entries[-1][0]
                return self._decode(entries)
            self._pending_from = None
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count, block=block_ms or None
        )
        return self._decode(reply[0][1]) if reply else []

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def close(self) -> None:
        self.client.close()
