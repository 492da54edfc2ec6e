"""The webhook secret and signature (docs/webhooks.md, "Verifying a delivery").

``Mnemo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, Stripe's scheme:
the timestamp is signed with the body, so a receiver that refuses old timestamps also refuses
replays. The secret is never stored: the database keeps a random salt, and the secret is
``HMAC-SHA256(pepper, salt)`` under the server-side API-key pepper (like the API keys,
docs/architecture.md, "Keys and sessions"), plus its SHA-256 so a process with another pepper
notices instead of signing with a wrong key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
HEADER = "Mnemo-Signature"
TOLERANCE_SECONDS = 300


def new_salt() -> str:
    """A fresh random salt: a new secret (at creation and at each rotation)."""
    return secrets.token_hex(16)


def secret_for(*, pepper: bytes, salt: str) -> str:
    """The secret a webhook's salt stands for under ``pepper``."""
    digest = hmac.new(pepper, b"mnemo-webhook-secret:" + salt.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def secret_check(secret: str) -> str:
    """What the database keeps to recognise the right secret (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _mac(secret: str, *, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def signature_header(secret: str, *, body: str, timestamp: int) -> str:
    """The value of ``Mnemo-Signature`` for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp=timestamp, body=body)}"


def verify(
    secret: str, *, header: str, body: str, tolerance: int = TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """What a receiver does: the header's ``v1`` matches and its ``t`` is recent."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
