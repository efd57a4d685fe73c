"""The HTTP routes of tandem's service (FastAPI), over one :class:`serving.state.Service`.

==========================  ========================================================================
``POST /events``            user actions; each is fsync'd to the event log before the reply
``POST /recommend``         a user id and/or session items in; top K, scores, explanations, model
                            version, A/B variant and per-stage timings out
``GET /healthz``            the process answers
``GET /readyz``             a bundle is loaded and warm (503 otherwise)
``GET /metrics``            Prometheus text: stage latencies, requests by route and status, version
``GET /admin/bundle``       the bundle served and the previous one (bearer token)
``POST /admin/bundle``      load a bundle in the background, then switch to it (bearer token)
``POST /admin/rollback``    switch back to the previous bundle (bearer token)
==========================  ========================================================================

Bad requests get a 4xx whose ``detail`` names what and where; an unexpected error is a 500 for that
request only: the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serving.bundle import describe
from serving.state import Ask, RequestError, Service

log = logging.getLogger("tandem.serving")


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=256)
    item: str = Field(min_length=1, max_length=256)
    event: str = Field(default="click", max_length=64)
    ts: float | None = None


class Events(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1, max_length=1000)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, min_length=1, max_length=256)
    session: list[str] = Field(default_factory=list)
    k: int = 10
    explain: bool = False


class BundleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class LimitAndCount:
    """Plain ASGI middleware: refuses bodies without a length or over ``limits.max_body_bytes``
    (before they are read) and counts every response by route, method and status."""

    def __init__(self, app: Any, service: Service, routes: set[str]) -> None:
        self.app, self.service, self.routes = app, service, routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        route = scope["path"] if scope["path"] in self.routes else "unmatched"

        async def send_counted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            self.service.metrics.requests.labels(route, scope["method"], str(status)).inc()

    def refusal(self, scope: Any) -> Response | None:
        if scope["method"] != "POST":
            return None
        limit = self.service.config.limits.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is None:
            return _error(411, "a Content-Length header is required")
        if not length.isdigit() or int(length) > limit:
            return _error(
                413, f"body of {length.decode()} bytes exceeds limits.max_body_bytes={limit}"
            )
        return None


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="tandem", docs_url=None, redoc_url=None)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    def authorise(authorization: str | None) -> None:
        token = service.config.admin_token
        if not token:
            raise RequestError("admin endpoints are disabled (set admin_token)", status=403)
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not authorization or not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestError("missing or wrong bearer token for /admin", status=401)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        bundle = service.slot.current
        return JSONResponse({"status": "ready", "model_version": bundle.version})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/events")
    async def events(body: Events) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seqs = await loop.run_in_executor(
            service.executor, service.ingest, [e.model_dump() for e in body.events]
        )
        return {"acknowledged": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1]}

    @app.post("/recommend")
    async def recommend(body: RecommendRequest) -> Response:
        t0 = time.perf_counter()
        ask = Ask(body.user, body.session, body.k, body.explain)
        answer = await asyncio.wrap_future(service.batcher.submit(ask))
        if isinstance(answer, RequestError):
            raise answer
        answer.timings_ms["http"] = (time.perf_counter() - t0) * 1e3
        return JSONResponse(  # built here: skips FastAPI's generic encoder on the hot path
            {
                "items": answer.items,
                "model_version": answer.model_version,
                "variant": answer.variant,
                "fallback": answer.fallback,
                "ignored_history_items": answer.ignored_history,
                "timings_ms": answer.timings_ms,
            }
        )

    @app.get("/admin/bundle")
    async def current_bundle(authorization: Annotated[str | None, Header()] = None) -> Any:
        authorise(authorization)
        slot = service.slot
        return {
            "serving": describe(slot.current),
            "previous": None if slot.previous is None else describe(slot.previous),
        }

    @app.post("/admin/bundle")
    async def swap(
        body: BundleRequest, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        authorise(authorization)
        return await service.swap(body.path)

    @app.post("/admin/rollback")
    async def rollback(authorization: Annotated[str | None, Header()] = None) -> Any:
        authorise(authorization)
        return service.rollback()

    app.add_middleware(LimitAndCount, service=service, routes={r.path for r in app.routes})  # type: ignore[attr-defined]
    return app
