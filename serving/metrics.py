"""Prometheus metrics of one service (its own registry, so several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGES = ("l1", "l2", "rerank", "total")
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """Latency per stage, requests and errors by route and status, the model version served."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "tandem_stage_seconds",
            "Time per pipeline stage of /recommend (total: the handler's whole time)",
            ["stage", "variant", "model_version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "tandem_requests",
            "HTTP requests by route and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.recommendations = Counter(
            "tandem_recommendations",
            "Answered /recommend requests by variant, model version and fallback",
            ["variant", "model_version", "fallback"],
            registry=self.registry,
        )
        self.events = Counter(
            "tandem_events", "Events acknowledged (durably logged)", registry=self.registry
        )
        self.model_info = Gauge(
            "tandem_model_info",
            "1 for the bundle version being served",
            ["model_version"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "tandem_bundle_swaps", "Bundle swaps by outcome", ["outcome"], registry=self.registry
        )

    def serving(self, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.model_info.labels(previous).set(0)
        self.model_info.labels(version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
