"""``/healthz`` (liveness), ``/readyz`` (database, broker, workers, store), ``/metrics`` (Prometheus).

Readiness (docs/service.md, "Health, readiness and metrics"): the database and the broker must be
reachable, and an object store's bucket too (a local store has nothing to check); the workers
are reported as live when a worker's main process was seen recently
(``core.db.workers.live_workers``), and none live is a 503 only where the settings expect a
worker (``ready_requires_worker``: ``mnemo serve`` turns it on). ``/metrics`` is open, closed
(404) or behind a bearer token, as the settings say (``api.metrics.metrics_access``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import Services, ServicesDep
from api.metrics import MetricsAccess, metrics_access
from api.schemas import ErrorOut, Health
from core.db.session import ping
from core.db.workers import live_window, live_workers

router = APIRouter(tags=["health"])
log = logging.getLogger("mnemo.api.health")
CHECK_TIMEOUT_SECONDS = 5.0
NO_WORKER = "error: no live worker"
NO_WORKER_NOT_REQUIRED = "none live (not required)"


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


def _check_broker(url: str) -> None:
    from kombu import Connection  # kombu is light (no torch); imported on first use

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
        connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


def _count_live_workers(session_factory: sessionmaker[Session], heartbeat_seconds: float) -> int:
    with session_factory() as session:
        return live_workers(session, within=live_window(heartbeat_seconds))


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in the thread pool, bounded in time."""
    with anyio.fail_after(CHECK_TIMEOUT_SECONDS + 1):
        return await run_in_threadpool(fn, *args)


async def _run_check(name: str, fn: Callable[..., Any], *args: Any) -> str:
    try:
        await _call(fn, *args)
    except Exception as error:
        log.warning("readiness check %s failed: %s", name, type(error).__name__)
        return f"error: {type(error).__name__}"
    return "ok"


async def check_database(services: Services) -> str:
    """``ok`` or ``error: <type>`` (also shown by the admin dashboard)."""
    return await _run_check("database", ping, services.session_factory)


async def check_broker(services: Services) -> str:
    """``ok`` or ``error: <type>`` (also shown by the admin dashboard)."""
    return await _run_check("broker", _check_broker, services.settings.broker_url)


async def check_workers(services: Services) -> str:
    """``ok`` (a worker is live), ``error: no live worker`` where one is required, else
    ``none live (not required)``; ``error: <type>`` when the database cannot say."""
    settings = services.settings
    try:
        count = await _call(_count_live_workers, services.session_factory, settings.worker_heartbeat_seconds)
    except Exception as error:
        log.warning("readiness check workers failed: %s", type(error).__name__)
        return f"error: {type(error).__name__}"
    if count:
        return "ok"
    return NO_WORKER if settings.ready_requires_worker else NO_WORKER_NOT_REQUIRED


@router.get(
    "/readyz",
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "the database, the broker or the object store's bucket is unreachable, or "
            "no worker is live where one is required (MNEMO_READY_REQUIRES_WORKER; on under `mnemo serve`)",
        }
    },
    summary="Readiness: the database and the broker are reachable, and the workers are live",
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = {
        "database": await check_database(services),
        "broker": await check_broker(services),
        "workers": await check_workers(services),
    }
    if services.store.remote:  # an object store: its bucket must answer (docs/deployment.md)
        checks["store"] = await _run_check("store", services.store.check)
    ok = not any(value.startswith("error") for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        401: {"model": ErrorOut, "description": "MNEMO_METRICS_TOKEN is set and the bearer token differs"},
        404: {"model": ErrorOut, "description": "metrics are turned off (MNEMO_METRICS_ENABLED=false)"},
    },
    summary="Prometheus metrics (open, token-protected or off: MNEMO_METRICS_*)",
    include_in_schema=True,
)
def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    access = metrics_access(services.settings, authorization=request.headers.get("authorization"))
    if access is MetricsAccess.OFF:
        raise HTTPException(status_code=404, detail="Not Found")
    if access is MetricsAccess.DENIED:
        headers = {"WWW-Authenticate": "Bearer"}
        raise HTTPException(status_code=401, detail="a valid metrics token is required", headers=headers)
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
