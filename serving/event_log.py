"""The durable event log: an event is on disk (written and fsync'd) before it is acknowledged.

One JSON object per line, each with a sequence number. A crash can leave at most one torn line at
the end (never acknowledged, since the fsync had not returned); opening the log cuts it off, so
the log always holds exactly the acknowledged events, in order.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ranking.errors import DataError


class EventLog:
    """Append-only, fsync'd JSON-lines log at ``path`` (created with its directory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._next_seq = self._repair()
        self._fh = open(self.path, "ab")  # noqa: SIM115 (open for the log's lifetime)

    def _repair(self) -> int:
        """Cut a torn last line; return the next sequence number."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        last = 0
        for n, line in enumerate(data[:end].splitlines(), start=1):
            try:
                last = int(json.loads(line)["seq"]) + 1
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"line {n} is not an event ({exc})", path=self.path) from exc
        return last

    def append(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Write ``events`` durably; return their sequence numbers (only once they are on disk)."""
        with self._lock:
            seqs = list(range(self._next_seq, self._next_seq + len(events)))
            blob = b"".join(
                json.dumps({"seq": s, **e}, separators=(",", ":")).encode() + b"\n"
                for s, e in zip(seqs, events, strict=True)
            )
            self._fh.write(blob)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._next_seq += len(events)
            return seqs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every event on disk, in order."""
        with open(self.path, "rb") as fh:
            for line in fh:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    def __len__(self) -> int:
        return self._next_seq

    def close(self) -> None:
        self._fh.close()
