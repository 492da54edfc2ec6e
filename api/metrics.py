"""Prometheus metrics of the API: requests by route template and status, latency, jobs by state.

Each app has its own registry (several apps may live in one test process). Who may read them is
``metrics_access``: anyone by default, nobody with ``MNEMO_METRICS_ENABLED=false``, or a scraper
that sends ``Authorization: Bearer <MNEMO_METRICS_TOKEN>`` when a token is set.
"""

from __future__ import annotations

import enum
import hmac
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db.models import Job
from core.settings import Settings


class MetricsAccess(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"  # a token is configured and the request's differs (401)
    OFF = "off"  # metrics are turned off (404)


def metrics_access(settings: Settings, *, authorization: str | None) -> MetricsAccess:
    """May a request with this ``Authorization`` header read ``/metrics``? (constant-time compare)"""
    if not settings.metrics_enabled:
        return MetricsAccess.OFF
    token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else ""
    if not token:
        return MetricsAccess.ALLOWED
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return MetricsAccess.ALLOWED
    return MetricsAccess.DENIED


class JobStateCollector(Collector):
    """``mnemo_jobs{kind,state}``: job counts read from the database at scrape time."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("mnemo_jobs", "Jobs by kind and state", labels=["kind", "state"])
        try:
            with self.session_factory() as session:
                rows = session.execute(
                    select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
                )
                for kind, state, count in rows:
                    family.add_metric([kind, state], float(count))
        except Exception:  # a scrape must not fail because the DB blips
            pass
        yield family


class ApiMetrics:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnemo_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mnemo_http_request_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.upload_rejections = Counter(
            "mnemo_upload_rejections", "Refused uploads by HTTP status", ["status"], registry=self.registry
        )
        self.registry.register(JobStateCollector(session_factory))


class MetricsMiddleware:
    """Counts requests by the matched route's *template* (never the raw path: ids are not labels)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status_code)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
            if template == "/v1/concepts" and method == "POST" and 400 <= status_code < 500:
                self.metrics.upload_rejections.labels(str(status_code)).inc()
