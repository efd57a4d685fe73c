"""The service against a real uvicorn server on 127.0.0.1 (``tandem-serve`` in a subprocess)."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.serving.servers import TOKEN, running

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    with running(bundles["v1"], tmp_path_factory.mktemp("state")) as srv:
        yield srv


def recommend(url: str, **body) -> dict:
    reply = httpx.post(f"{url}/recommend", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_recommend_round_trip_answers_the_next_item_with_version_variant_and_timings(server):
    out = recommend(server.url, session=["item-5", "item-6"], k=5, explain=True)
    items = [e["item"] for e in out["items"]]
    assert len(items) == 5 and len(set(items)) == 5
    assert items[0] == "item-7"  # the world's rule i -> i + 1, learned by L1 and L2
    assert out["model_version"] == "v1"
    assert out["variant"] in {"control", "treatment"}
    assert out["fallback"] is None
    assert {"l1", "l2", "rerank", "total", "http"} <= set(out["timings_ms"])
    assert all(out["timings_ms"][s] >= 0 for s in ("l1", "l2", "total"))
    assert all("why" in e for e in out["items"])


def test_an_ingested_event_changes_the_next_recommendation(server):
    user = "alice"
    first = recommend(server.url, user=user, k=3)
    assert first["fallback"] == "popular"  # a new user: documented fallback, not an error
    events = [{"user": user, "item": f"item-{i}"} for i in (10, 11)]
    ack = httpx.post(f"{server.url}/events", json={"events": events}, timeout=10)
    assert ack.status_code == 200 and ack.json()["acknowledged"] == 2
    after = recommend(server.url, user=user, k=3)
    assert after["fallback"] is None and after["items"][0]["item"] == "item-12"
    httpx.post(f"{server.url}/events", json={"events": [{"user": user, "item": "item-40"}]})
    moved = recommend(server.url, user=user, k=3)
    assert moved["items"][0]["item"] == "item-41"


def _counter(text: str, route: str, status: str) -> float:
    pattern = rf'^tandem_requests_total\{{method="POST",route="{re.escape(route)}",status="{status}"\}} (\S+)$'
    match = re.search(pattern, text, flags=re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_the_new_requests_and_latency_per_stage(server):
    before = httpx.get(f"{server.url}/metrics").text
    for _ in range(3):
        recommend(server.url, session=["item-1"], k=2)
    httpx.post(f"{server.url}/recommend", json={"k": "many"})
    after = httpx.get(f"{server.url}/metrics").text
    assert _counter(after, "/recommend", "200") - _counter(before, "/recommend", "200") == 3
    assert _counter(after, "/recommend", "422") - _counter(before, "/recommend", "422") == 1
    assert re.search(
        r'tandem_stage_seconds_count\{model_version="v1",stage="l2",variant="\w+"\}', after
    )
    assert 'tandem_model_info{model_version="v1"} 1.0' in after


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 422, "JSON"),
        (json.dumps({"session": ["no-such-item"]}).encode(), 422, "no-such-item"),
        (json.dumps({"session": ["item-1"] * 201}).encode(), 422, "max_session_items"),
        (json.dumps({"session": ["item-1"], "k": 61}).encode(), 422, "k=61"),
        (json.dumps({"session": ["item-1"], "k": 0}).encode(), 422, "k=0"),
        (json.dumps({"session": ["item-1"], "colour": "red"}).encode(), 422, "colour"),
        (json.dumps({"session": ["item-1"] * 10_000}).encode(), 413, "max_body_bytes"),
    ],
    ids=[
        "invalid-json",
        "unknown-item",
        "long-session",
        "k-too-large",
        "k-zero",
        "unknown-field",
        "oversized",
    ],
)
def test_bad_recommend_requests_get_a_4xx_that_names_the_problem(server, body, status, says):
    reply = httpx.post(
        f"{server.url}/recommend", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == status, reply.text
    assert says in reply.json()["detail"]


def test_bad_events_and_unauthorised_admin_calls_are_refused(server):
    unknown = httpx.post(f"{server.url}/events", json={"events": [{"user": "u", "item": "zzz"}]})
    assert unknown.status_code == 422 and "events[0].item" in unknown.json()["detail"]
    empty = httpx.post(f"{server.url}/events", json={"events": []})
    assert empty.status_code == 422
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        denied = httpx.post(f"{server.url}/admin/rollback", headers=headers)
        assert denied.status_code == 401 and "bearer token" in denied.json()["detail"]
    missing = httpx.post(f"{server.url}/admin/bundle", json={"path": "/nonexistent"}, headers=ADMIN)
    assert missing.status_code == 422 and "still serving" in missing.json()["detail"]


def test_the_largest_k_never_returns_faiss_padding(server):
    out = recommend(server.url, session=["item-3"], k=30)  # = the bundle's n_candidates
    items = [e["item"] for e in out["items"]]
    assert len(set(items)) == len(items) and all(re.fullmatch(r"item-\d+", i) for i in items)


def test_a_corrupt_bundle_is_refused_and_the_old_one_keeps_serving(server, bundles):
    reply = httpx.post(
        f"{server.url}/admin/bundle",
        json={"path": str(bundles["corrupt"])},
        headers=ADMIN,
        timeout=60,
    )
    assert reply.status_code == 422
    assert "checksum mismatch" in reply.json()["detail"] and "weights.pt" in reply.json()["detail"]
    assert httpx.get(f"{server.url}/readyz").json()["model_version"] == "v1"
    assert recommend(server.url, session=["item-5"], k=3)["model_version"] == "v1"


def test_a_bundle_swap_under_concurrent_load_fails_no_request_and_rolls_back(server, bundles):
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                reply = client.post(f"{server.url}/recommend", json={"session": ["item-8"], "k": 5})
                statuses[reply.status_code] += 1
                if reply.status_code == 200:
                    versions[reply.json()["model_version"]] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        swap = httpx.post(
            f"{server.url}/admin/bundle",
            json={"path": str(bundles["v2"])},
            headers=ADMIN,
            timeout=60,
        )
        assert swap.status_code == 200, swap.text
        assert swap.json()["serving"]["version"] == "v2"
        n = sum(statuses.values())
        while sum(statuses.values()) < n + 20:
            threading.Event().wait(0.05)
        back = httpx.post(f"{server.url}/admin/rollback", headers=ADMIN, timeout=10)
        assert back.status_code == 200 and back.json()["serving"]["version"] == "v1"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) == {200}, statuses
    assert versions["v1"] > 0 and versions["v2"] >= 20
    assert httpx.get(f"{server.url}/readyz").json()["model_version"] == "v1"
