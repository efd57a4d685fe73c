"""Acknowledged events survive a SIGKILL; replicas share sessions through a real redis-server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from ranking.errors import DataError
from tests.serving.servers import redis_server, running


def test_every_acknowledged_event_survives_sigkill_and_restart(bundles, tmp_path):
    state = tmp_path / "state"
    acknowledged: list[int] = []
    with running(bundles["v1"], state) as server:
        httpx.post(
            f"{server.url}/events",
            json={"events": [{"user": "bob", "item": f"item-{i}"} for i in (20, 21)]},
        ).raise_for_status()

        def flood() -> None:
            with httpx.Client(timeout=5) as client:
                for n in range(100_000):
                    event = {"user": f"user-{n % 7}", "item": f"item-{n % 60}"}
                    try:
                        reply = client.post(f"{server.url}/events", json={"events": [event]})
                    except httpx.HTTPError:
                        return  # the server was killed mid-request: that event was never acked
                    if reply.status_code == 200:
                        acknowledged.append(reply.json()["last_seq"])

        threads = [threading.Thread(target=flood) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        server.kill()  # SIGKILL, with requests in flight
        for t in threads:
            t.join()
    assert len(acknowledged) > 20
    logged = [json.loads(line) for line in (state / "events.log").read_text().splitlines()]
    seqs = {e["seq"] for e in logged}
    assert set(acknowledged) <= seqs  # nothing acknowledged is lost
    assert [e["seq"] for e in logged] == list(range(len(logged)))  # no gap, no duplicate
    with running(bundles["v1"], state) as restarted:
        out = httpx.post(f"{restarted.url}/recommend", json={"user": "bob", "k": 3}).json()
        assert out["fallback"] is None and out["items"][0]["item"] == "item-22"
        more = httpx.post(
            f"{restarted.url}/events", json={"events": [{"user": "bob", "item": "item-30"}]}
        ).json()
        assert more["first_seq"] == len(logged)  # the log goes on where it stopped


def test_two_replicas_sharing_redis_give_the_same_recommendation(bundles, tmp_path: Path):
    with redis_server(tmp_path / "redis") as url:
        overrides = ("sessions.kind=redis", f"sessions.redis_url={url}")
        with (
            running(bundles["v1"], tmp_path / "a", *overrides) as a,
            running(bundles["v1"], tmp_path / "b", *overrides) as b,
        ):
            events = [{"user": "carol", "item": f"item-{i}"} for i in (33, 34, 35)]
            httpx.post(f"{a.url}/events", json={"events": events}).raise_for_status()
            body = {"user": "carol", "k": 5}
            from_a = httpx.post(f"{a.url}/recommend", json=body).json()
            from_b = httpx.post(f"{b.url}/recommend", json=body).json()
            assert (
                from_b["fallback"] is None
            )  # b never saw the event: it read the session from Redis
            assert from_a["items"] == from_b["items"]
            assert from_b["items"][0]["item"] == "item-36"


def test_a_redis_stream_feeds_the_service_through_a_consumer_group(bundles, tmp_path: Path):
    import redis

    from serving.forward import forward
    from serving.sources import RedisStreamSource

    with (
        redis_server(tmp_path / "redis", durable=True) as url,
        running(bundles["v1"], tmp_path / "state") as server,
    ):
        client = redis.Redis.from_url(url, decode_responses=True)
        events = [{"user": "dana", "item": f"item-{i}", "ts": float(i)} for i in (50, 51, 52)]
        events += [{"user": f"u{n}", "item": f"item-{n % 60}", "ts": 0.0} for n in range(40)]
        RedisStreamSource.publish(client, "events", events)
        source = RedisStreamSource(url, "events", "service", "forwarder-1")
        assert forward(source, server.url, batch=8, idle_seconds=1.0) == len(events)
        assert client.xpending("events", "service")["pending"] == 0  # all acknowledged
        out = httpx.post(f"{server.url}/recommend", json={"user": "dana", "k": 3}).json()
        assert out["items"][0]["item"] == "item-53"
        logged = (tmp_path / "state" / "events.log").read_text().splitlines()
        assert len(logged) == len(events)
        client.xadd("events", {"user": "eve", "item": "not-an-item"})
        with pytest.raises(DataError, match="refused events \\(422\\)"):
            forward(source, server.url, idle_seconds=1.0)
        assert client.xpending("events", "service")["pending"] == 1  # not acknowledged: not lost
