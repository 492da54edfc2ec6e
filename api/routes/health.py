"""``/healthz`` (liveness), ``/readyz`` (database and broker reachable), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import Services, ServicesDep
from api.schemas import Health
from core.db.session import ping

router = APIRouter(tags=["health"])
log = logging.getLogger("mnemo.api.health")
CHECK_TIMEOUT_SECONDS = 5.0


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


def _check_broker(url: str) -> None:
    from kombu import Connection  # kombu is light (no torch); imported on first use

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
        connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


async def _run_check(name: str, fn, *args) -> str:  # type: ignore[no-untyped-def]
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS + 1):
            await run_in_threadpool(fn, *args)
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


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is unreachable"}},
    summary="Readiness: the database and the broker are reachable",
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = {"database": await check_database(services), "broker": await check_broker(services)}
    ok = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())


@router.get("/metrics", response_class=Response, summary="Prometheus metrics", include_in_schema=True)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
