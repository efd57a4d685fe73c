"""Session state behind one interface: each user's recent items (external ids, oldest first).

* :class:`MemorySessions` (default): one process; rebuilt from the event log on start.
* :class:`RedisSessions`: a real ``redis-server`` shared by several replicas, so that any replica
  answers a user the same way. One Redis list per user, trimmed to ``max_len`` items.

Items are stored by their external id, not the bundle's dense index, so that a session survives a
swap to a bundle whose catalog numbers items differently.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from ranking.errors import ConfigError


class SessionStore(Protocol):
    max_len: int

    def append(self, user: str, items: Sequence[str]) -> None:
        """Add ``items`` (in order) to the end of ``user``'s session."""

    def get(self, user: str) -> list[str]:
        """``user``'s most recent items, oldest first (empty for an unknown user)."""

    def close(self) -> None: ...


class MemorySessions:
    """Sessions in this process's memory (lost on exit; the event log rebuilds them)."""

    def __init__(self, max_len: int = 50) -> None:
        if max_len < 1:
            raise ConfigError(f"sessions.max_len must be positive, got {max_len}")
        self.max_len = max_len
        self._sessions: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def append(self, user: str, items: Sequence[str]) -> None:
        with self._lock:
            session = self._sessions.setdefault(user, deque(maxlen=self.max_len))
            session.extend(items)

    def get(self, user: str) -> list[str]:
        with self._lock:
            return list(self._sessions.get(user, ()))

    def close(self) -> None:
        pass


class RedisSessions:
    """Sessions in Redis lists (``<prefix><user>``), shared by every replica using ``url``."""

    def __init__(self, url: str, max_len: int = 50, prefix: str = "tandem:session:") -> None:
        import redis  # imported here: a memory-only service needs no Redis client

        if max_len < 1:
            raise ConfigError(f"sessions.max_len must be positive, got {max_len}")
        self.max_len = max_len
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, decode_responses=True)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"sessions.redis_url={url!r}: cannot reach Redis ({exc})") from exc

    def append(self, user: str, items: Sequence[str]) -> None:
        if not items:
            return
        key = self.prefix + user
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *items)
            pipe.ltrim(key, -self.max_len, -1)
            pipe.execute()

    def get(self, user: str) -> list[str]:
        return list(self._client.lrange(self.prefix + user, -self.max_len, -1))

    def close(self) -> None:
        self._client.close()


def make_sessions(kind: str, *, max_len: int, redis_url: str | None) -> SessionStore:
    """The store named by ``sessions.kind`` (``memory`` or ``redis``)."""
    if kind == "memory":
        return MemorySessions(max_len)
    if kind == "redis":
        if not redis_url:
            raise ConfigError("sessions.kind=redis needs sessions.redis_url (redis://host:port/0)")
        return RedisSessions(redis_url, max_len)
    raise ConfigError(f"sessions.kind must be 'memory' or 'redis', got {kind!r}")
