"""One webhook POST: signed, to a vetted address, with short timeouts, no redirects
(docs/webhooks.md, "Delivery and retries").

``httpcore`` (the transport under httpx) is given a network backend that resolves and checks the
host itself (``core.webhooks.urls.vetted_address``) and connects to the checked address, while TLS
still verifies the certificate of the URL's host name. Only the status line and headers are read:
a 2xx answer is a success, anything else (a redirect included) a failure.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import httpcore

from core.webhooks.signing import HEADER, signature_header
from core.webhooks.urls import WebhookUrlError, vetted_address

USER_AGENT = "Mnemo-Webhooks/1"


@dataclass(frozen=True)
class Outgoing:
    """One claimed delivery, as the sender needs it."""

    delivery_id: str
    webhook_id: str
    url: str
    event: str
    body: str
    attempt: int


@dataclass(frozen=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (timeout, refused, not allowed)
    error: str | None  # None on success; else a short reason, never the receiver's answer body

    @property
    def ok(self) -> bool:
        return self.error is None


class VettedBackend(httpcore.SyncBackend):
    """Connects only to addresses ``vetted_address`` allows."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        address = vetted_address(host, port, allow_private=self.allow_private)
        return super().connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def headers(outgoing: Outgoing, *, secret: str, now: float | None = None) -> list[tuple[str, str]]:
    """What a delivery carries besides its body."""
    timestamp = int(time.time() if now is None else now)
    return [
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("Mnemo-Event", outgoing.event),
        ("Idempotency-Key", outgoing.delivery_id),
        ("Mnemo-Delivery-Attempt", str(outgoing.attempt)),
        (HEADER, signature_header(secret, body=outgoing.body, timestamp=timestamp)),
    ]


def send(outgoing: Outgoing, *, secret: str, timeout: float, allow_private: bool) -> SendResult:
    """POST the delivery once; never raises for a network or receiver problem."""
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    pool = httpcore.ConnectionPool(
        ssl_context=_tls(), max_connections=1, network_backend=VettedBackend(allow_private=allow_private)
    )
    try:
        with pool.stream(
            "POST",
            outgoing.url,
            headers=headers(outgoing, secret=secret),
            content=outgoing.body.encode(),
            extensions={"timeout": limits},
        ) as response:
            status = response.status
    except WebhookUrlError as error:
        return SendResult(None, str(error))
    except httpcore.TimeoutException:
        return SendResult(None, f"no answer within {timeout:g} s")
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as error:
        return SendResult(None, f"connection failed ({type(error).__name__})")
    finally:
        pool.close()
    if 200 <= status < 300:
        return SendResult(status, None)
    return SendResult(status, f"HTTP {status}")
