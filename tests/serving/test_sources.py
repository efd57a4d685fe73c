"""Event sources: a dataset replayed in time order, and Redis Streams with a consumer group."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from builders import rule_log

from ranking.errors import DataError
from serving.sources import RedisStreamSource, ReplaySource
from tests.serving.bundles import tiny_catalog
from tests.serving.servers import redis_server


def test_replay_yields_every_interaction_once_in_time_order():
    log = rule_log(60, n_users=20, seed=1)
    shuffled = np.random.default_rng(0).permutation(len(log.user))
    log = type(log)(
        user=log.user[shuffled],
        item=log.item[shuffled],
        timestamp=log.timestamp[shuffled],
        user_ids=log.user_ids,
        n_items=60,
    )
    source = ReplaySource(log, tiny_catalog())
    events = [e for _, e in source]
    assert len(events) == len(log.user)
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    assert sorted((e["user"], e["item"], e["ts"]) for e in events) == sorted(
        (str(log.user_ids[u]), f"item-{i}", float(t))
        for u, i, t in zip(log.user, log.item, log.timestamp, strict=True)
    )


def test_replay_is_paced_by_the_speedup():
    log = rule_log(60, n_users=3, seed=2, lengths=(4, 5))  # timestamps 0..3
    source = ReplaySource(log, tiny_catalog(), speedup=10.0)  # 3 time units -> 0.3 s
    t0 = time.monotonic()
    n = sum(1 for _ in source)
    assert n == len(log.user)
    assert 0.25 <= time.monotonic() - t0 < 3.0


EVENTS = [{"user": f"u{n % 5}", "item": f"item-{n % 60}", "ts": float(n)} for n in range(200)]


def drain(source: RedisStreamSource, sink: list, stop_after: int | None = None) -> None:
    while True:
        batch = source.read(count=7, block_ms=200)
        if not batch:
            return
        for event_id, event in batch:
            sink.append((event_id, event))
            source.ack([event_id])
            if stop_after is not None and len(sink) >= stop_after:
                return


def test_a_consumer_group_delivers_each_event_to_one_consumer(tmp_path: Path):
    with redis_server(tmp_path / "redis", durable=True) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        ids = RedisStreamSource.publish(client, "events", EVENTS)
        got: dict[str, list] = {"a": [], "b": []}
        consumers = {n: RedisStreamSource(url, "events", "service", n) for n in got}
        threads = [threading.Thread(target=drain, args=(consumers[n], got[n])) for n in got]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        delivered = [i for n in got for i, _ in got[n]]
        assert sorted(delivered) == sorted(ids)  # every event, none twice
        assert got["a"] and got["b"]  # the group spread them
        assert client.xpending("events", "service")["pending"] == 0


def test_a_restarted_consumer_resumes_without_loss(tmp_path: Path):
    with redis_server(tmp_path / "redis", durable=True) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        ids = RedisStreamSource.publish(client, "events", EVENTS)
        first = RedisStreamSource(url, "events", "service", "worker-1")
        handled: list = []
        drain(first, handled, stop_after=50)  # acked 50; the rest of its last batch is pending
        unacked = first.read(count=10)  # read 10 more, then "crash" before acknowledging them
        assert len(unacked) == 10
        pending = client.xpending("events", "service")["pending"]
        assert pending >= 10
        first.close()
        restarted = RedisStreamSource(url, "events", "service", "worker-1")
        again: list = []
        drain(restarted, again)
        assert [i for i, _ in handled] == ids[:50]
        # the backlog first, then the new events: every event exactly once, in stream order
        assert [i for i, _ in again] == ids[50:]
        assert [e["item"] for _, e in again] == [e["item"] for e in EVENTS[50:]]
        assert client.xpending("events", "service")["pending"] == 0


def test_a_malformed_stream_entry_is_named(tmp_path: Path):
    with redis_server(tmp_path / "redis") as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        source = RedisStreamSource(url, "events", "service", "w")
        client.xadd("events", {"user": "u1"})
        with pytest.raises(DataError, match="lacks \\['item'\\]"):
            source.read()
