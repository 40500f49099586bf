"""Metrics (Prometheus), health and readiness probes, and structured JSON logs.

* ``GET /metrics`` (no key; text format of ``prometheus-client``): epoch latency (market
  update accepted -> margins stored and attested), accounts by health per book, liquidation
  queue length per book and stream clients (gauges other parts of the service set through
  ``service.metrics``), feed age, attestation time, the log sequence, HTTP request latency per
  route template.
* ``GET /readyz`` (no key): 200 when the database answers, the state has replayed the whole
  log and a market is present; else 503 naming the failed checks. ``GET /healthz`` (process
  alive) stays in the app.
* :func:`setup_json_logs`: one JSON object per line on stderr (``ts``, ``level``, ``logger``,
  ``msg`` and the record's extra fields: ``seq`` and ``kind`` on every write).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pmargin.service.app import Service

__all__ = ["JsonFormatter", "Metrics", "install", "setup_json_logs"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)


class Metrics:
    """The service's metrics, in a registry of their own (one per service object).

    Other parts of the service set the gauges they own, e.g.
    ``service.metrics.liquidation_queue.labels(book="BTC").set(3)`` or
    ``service.metrics.stream_clients.inc()``.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.epoch_latency = Histogram(
            "pmargin_epoch_latency_seconds",
            "Market update accepted (event committed) to margins stored and attested",
            registry=r, buckets=LATENCY_BUCKETS)
        self.attestation_seconds = Histogram(
            "pmargin_attestation_seconds", "Leaves, Merkle tree, signature and storage of one "
            "epoch", registry=r, buckets=LATENCY_BUCKETS)
        self.attestation_failures = Counter(
            "pmargin_attestation_failures", "Epochs whose attestation failed", registry=r)
        self.accounts_by_health = Gauge(
            "pmargin_accounts", "Accounts by health at the latest epoch",
            ["book", "health"], registry=r)
        self.liquidation_queue = Gauge(
            "pmargin_liquidation_queue", "Accounts waiting for or in liquidation", ["book"],
            registry=r)
        self.stream_clients = Gauge(
            "pmargin_stream_clients", "Connected stream (WebSocket) clients", registry=r)
        self.feed_age = Gauge(
            "pmargin_feed_age_seconds", "Seconds since the last accepted market update "
            "(server clock; -1 before the first)", registry=r)
        self.market_age = Gauge(
            "pmargin_market_valuation_age_seconds", "Server time minus the valuation time of "
            "the market in use (-1 without a market)", registry=r)
        self.seq = Gauge("pmargin_event_seq", "Sequence number of the state", registry=r)
        self.epoch = Gauge("pmargin_attestation_epoch", "Latest attested epoch", registry=r)
        self.http_latency = Histogram(
            "pmargin_http_request_duration_seconds", "HTTP request latency per route",
            ["method", "route", "status"], registry=r, buckets=LATENCY_BUCKETS)
        self.market_accepted_at: float | None = None  # time.monotonic() of the last market

    def bind(self, svc: Service) -> None:
        """Compute the gauges read from the state at scrape time."""
        def feed_age() -> float:
            t = self.market_accepted_at
            return -1.0 if t is None else time.monotonic() - t

        def market_age() -> float:
            m = svc.state.market
            if m is None:
                return -1.0
            return (datetime.now(UTC) - m.valuation_time).total_seconds()

        self.feed_age.set_function(feed_age)
        self.market_age.set_function(market_age)
        self.seq.set_function(lambda: float(svc.state.seq))
        self.epoch.set_function(
            lambda: float(svc.attestor.last_epoch) if svc.attestor is not None else 0.0)

    def epoch_done(self, by_health: dict[str, dict[str, int]], accepted_at: float | None
                   ) -> None:
        """Record an epoch: health counts per book, latency from ``accepted_at`` (perf_counter)."""
        self.market_accepted_at = time.monotonic()
        for book, counts in by_health.items():
            for health, n in counts.items():
                self.accounts_by_health.labels(book=book, health=health).set(n)
        if accepted_at is not None:
            self.epoch_latency.observe(time.perf_counter() - accepted_at)


class _Timing:
    """ASGI middleware: latency of every HTTP request by route template (not raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status[0] = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(method=scope.get("method", ""), route=path,
                                             status=str(status[0])).observe(
                time.perf_counter() - t0)


def install(app: FastAPI, svc: Service) -> None:
    """Add ``/metrics``, ``/readyz`` and the request-timing middleware to the app."""
    from fastapi.responses import JSONResponse, Response

    metrics = svc.metrics
    metrics.bind(svc)
    app.add_middleware(_Timing, metrics=metrics)

    @app.get("/metrics", include_in_schema=False, response_model=None)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/readyz", response_model=None, responses={
        503: {"description": "not ready: the body names the failed checks"}})
    def readyz() -> JSONResponse:
        """Ready to serve: database reachable, log replayed, market present (else 503)."""
        checks: dict[str, Any] = {}
        try:
            from pmargin.service import tables as T

            with svc.store.engine.connect() as c:
                last = c.execute(sa.select(sa.func.max(T.events.c.seq))).scalar()
            checks["database"] = True
        except Exception as exc:  # any driver error: not ready, say why
            checks["database"] = False
            checks["database_error"] = f"{type(exc).__name__}: {exc}"[:200]
            last = None
        with svc.lock:
            seq = svc.state.seq
            checks["market"] = svc.state.market is not None
        checks["replayed"] = checks["database"] and int(last or 0) == seq
        ok = bool(checks["database"] and checks["replayed"] and checks["market"])
        return JSONResponse({"ready": ok, "seq": seq, "log_seq": last, "checks": checks},
                            200 if ok else 503)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the extra fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in self._STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_json_logs(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Send the ``pmargin`` loggers to ``stream`` (stderr) as JSON lines; the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pmargin")
    for h in list(logger.handlers):
        if isinstance(h.formatter, JsonFormatter):
            logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
