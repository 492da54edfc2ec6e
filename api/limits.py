"""Limits of the API: the request-body cap, per-user quotas, and failed-authentication lockouts.

* ``BodySizeLimitMiddleware``: a request-body cap enforced while the body streams in (before
  multipart parsing finishes);
* ``Quotas``: concepts per user, unfinished jobs per user, images per window (counted in SQL by
  ``core.db.quotas``; enforced by the dependencies in ``api.quotas``), 429 with ``Retry-After``;
* ``AuthThrottle``: failed API-key attempts per client address, with a lockout window
  (``auth_lockout``, a dependency of the key check in ``api.deps``).

This module imports nothing from the rest of ``api`` (``api.deps`` imports it).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answer 413 to a request whose body exceeds its cap (declared or streamed).

    Multipart uploads may be up to ``max_upload_bytes``; every other body (JSON) up to
    ``max_other_bytes``.
    """

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int, max_other_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes, self.max_other_bytes = max_upload_bytes, max_other_bytes

    async def _reject(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"the request body is larger than {limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_upload_bytes if multipart else self.max_other_bytes
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await self._reject(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn the receive error into its own answer (FastAPI: 400); answer 413 instead.
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                started = True
                await self._reject(send, limit)


# ---- 429s: per-user quotas and failed-authentication lockouts -----------------------------------
# (docs/service.md, "Quotas and rate limits")


def too_many_requests(detail: str, *, retry_after: float) -> HTTPException:
    """A 429 whose ``Retry-After`` (whole seconds, at least 1) says when to try again."""
    seconds = max(1, math.ceil(retry_after))
    return HTTPException(status_code=429, detail=detail, headers={"Retry-After": str(seconds)})


@dataclass(frozen=True)
class Quotas:
    """Per-user quotas; each check raises a 429 when a new job would exceed one."""

    concepts: int
    unfinished_jobs: int
    images: int
    window_seconds: int
    retry_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        return cls(
            concepts=settings.quota_concepts_per_user,
            unfinished_jobs=settings.quota_unfinished_jobs_per_user,
            images=settings.quota_images_per_window,
            window_seconds=settings.quota_window_seconds,
            retry_seconds=settings.quota_retry_after_seconds,
        )

    def check_concepts(self, count: int) -> None:
        """Concepts only free up when one fails or is cancelled: retry after a whole window."""
        if count >= self.concepts:
            raise too_many_requests(
                f"you have {count} concepts, the most an account may have ({self.concepts})",
                retry_after=self.window_seconds,
            )

    def check_unfinished_jobs(self, count: int) -> None:
        if count >= self.unfinished_jobs:
            raise too_many_requests(
                f"you have {count} queued or running jobs, the most at a time ({self.unfinished_jobs}); "
                "wait for some to finish",
                retry_after=self.retry_seconds,
            )

    def check_images(self, requested: list[tuple[datetime, int]], *, n: int, now: datetime) -> None:
        """``requested``: ``(created_at, n)`` of the window's generations, oldest first."""
        used = sum(count for _, count in requested)
        if used + n <= self.images:
            return
        raise too_many_requests(
            f"{used} images asked for in the last {self.window_seconds} s; {n} more would pass "
            f"the {self.images} allowed per window",
            retry_after=self._images_retry_after(requested, used=used, n=n, now=now),
        )

    def _images_retry_after(
        self, requested: list[tuple[datetime, int]], *, used: int, n: int, now: datetime
    ) -> float:
        """Seconds until enough of the oldest generations leave the window for ``n`` more images."""
        for created_at, count in requested:
            used -= count
            if used + n <= self.images:
                return (created_at - now).total_seconds() + self.window_seconds
        return float(self.window_seconds)  # n alone is more than a window allows


def client_address(request: Request) -> str:
    """The peer address of the request (behind a proxy: run uvicorn with ``--proxy-headers``)."""
    return request.client.host if request.client else "unknown"


class AuthThrottle:
    """Failed API-key attempts per client address, in a sliding window of ``window_seconds``.

    An address with ``limit`` failures in the window is locked out until the oldest of them
    leaves it: requests that present a key answer 429 without the key being checked. In memory,
    per API process; at most ``max_addresses`` are remembered (the stalest are forgotten first).
    """

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_seconds, self.max_addresses = limit, window_seconds, max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle:
        return cls(limit=settings.auth_failures_per_address, window_seconds=settings.auth_lockout_seconds)

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it is not locked out."""
        with self._lock:
            recent = self._recent(address, now=self.clock())
            if len(recent) < self.limit:
                return None
            return recent[-self.limit] + self.window_seconds - self.clock()

    def failed(self, address: str) -> None:
        """Count one failed attempt from ``address``."""
        with self._lock:
            now = self.clock()
            recent = self._recent(address, now=now)
            recent.append(now)
            self._failures[address] = recent
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def _recent(self, address: str, *, now: float) -> deque[float]:
        recent = self._failures.get(address, deque(maxlen=self.limit))
        while recent and recent[0] <= now - self.window_seconds:
            recent.popleft()
        return recent


_THROTTLE_LOCK = threading.Lock()


def auth_throttle(request: Request) -> AuthThrottle:
    """The app's ``AuthThrottle`` (``app.state.auth_throttle``, made from the settings on first use)."""
    state = request.app.state
    with _THROTTLE_LOCK:
        if getattr(state, "auth_throttle", None) is None:
            state.auth_throttle = AuthThrottle.from_settings(state.services.settings)
    return state.auth_throttle


def refuse_locked_out(throttle: AuthThrottle, request: Request) -> None:
    """429 while the caller's address is locked out after failed API keys."""
    wait = throttle.retry_after(client_address(request))
    if wait is not None:
        raise too_many_requests("too many failed API-key attempts from your address", retry_after=wait)


def auth_lockout(request: Request) -> AuthThrottle:
    """Dependency of the key check: 429 while the caller's address is locked out (only requests that
    present a key: without one there is nothing to guess); returns the throttle to count failures."""
    throttle = auth_throttle(request)
    if request.headers.get("authorization"):
        refuse_locked_out(throttle, request)
    return throttle
