"""``tandem-forward``: feed a running service from an event source (Redis Streams).

Reads a consumer group's events, posts them to ``POST /events`` in batches, and acknowledges them
in Redis only after the service acknowledged them (fsync'd in its event log): a crash of either side
loses nothing; an event may be posted twice after a crash between the two acknowledgements.

    tandem-forward --redis redis://127.0.0.1:6379/0 --stream events --group tandem \\
        --consumer forwarder-1 --service http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from ranking.errors import ConfigError, DataError
from serving.sources import EventSource, RedisStreamSource

FIELDS = ("user", "item", "event", "ts")


def forward(
    source: EventSource,
    service: str,
    *,
    batch: int = 100,
    max_events: int | None = None,
    idle_seconds: float | None = None,
    client: httpx.Client | None = None,
) -> int:
    """Forward events until ``max_events`` were forwarded or nothing came for ``idle_seconds``
    (``None``: forever); returns how many were acknowledged by the service."""
    client = client or httpx.Client(timeout=30)
    done, last = 0, time.monotonic()
    while max_events is None or done < max_events:
        events = source.read(count=batch, block_ms=500)
        if not events:
            if idle_seconds is not None and time.monotonic() - last > idle_seconds:
                break
            continue
        last = time.monotonic()
        body = {"events": [{k: e[k] for k in FIELDS if k in e} for _, e in events]}
        reply = client.post(f"{service}/events", json=body)
        if reply.status_code != 200:
            raise DataError(f"the service refused events ({reply.status_code}): {reply.text[:300]}")
        source.ack([event_id for event_id, _ in events])
        done += len(events)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-forward", description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--stream", default="events")
    parser.add_argument("--group", default="tandem")
    parser.add_argument("--consumer", default="forwarder-1")
    parser.add_argument("--service", default="http://127.0.0.1:8000")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--idle-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        source = RedisStreamSource(args.redis, args.stream, args.group, args.consumer)
        n = forward(
            source,
            args.service,
            batch=args.batch,
            max_events=args.max_events,
            idle_seconds=args.idle_seconds,
        )
    except (ConfigError, DataError, httpx.HTTPError) as exc:
        print(f"tandem-forward: {exc}", file=sys.stderr)
        return 2
    print(f"tandem-forward: {n} events forwarded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
