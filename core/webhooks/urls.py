"""Which URLs a webhook may have, and which addresses the relay may connect to (docs/webhooks.md,
"Addresses and SSRF").

A webhook makes the service send requests to a URL a user chose; left open, that lets a user probe
the service's own network (the database, Redis, a cloud metadata endpoint). So by default only
public (globally routable) addresses are reached: a URL whose host is a private, loopback,
link-local or otherwise special IP literal (or ``localhost``) is refused when it is set, and every
address a host name resolves to is checked again when a delivery connects — the connection goes to
the address that was checked, so a name that resolves differently later (DNS rebinding) gains
nothing. ``MNEMO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` lifts both checks (a trusted intranet, tests).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlError(ValueError):
    """A URL or an address a webhook may not use (the message says why, in words)."""


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address (not private, loopback, link-local, shared, reserved...)."""
    return address.is_global and not address.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` if a webhook may have it; ``WebhookUrlError`` otherwise. Resolves no name."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise WebhookUrlError("the URL has a space or a control character")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as error:
        raise WebhookUrlError(f"not a valid URL ({error})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise WebhookUrlError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise WebhookUrlError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("the URL may not carry a user name or password (the signature authenticates)")
    if parts.fragment:
        raise WebhookUrlError("the URL may not have a #fragment")
    if not allow_private:
        _refuse_special_host(parts.hostname)
    return url


def _refuse_special_host(host: str) -> None:
    if host == "localhost" or host.endswith(".localhost"):
        raise WebhookUrlError("the URL's host is this machine (localhost), which webhooks may not reach")
    address = _address(host)
    if address is not None and not is_public(address):
        raise WebhookUrlError(f"{address} is not a public address, which webhooks may not reach")


def vetted_address(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: the first it resolves to, after checking them all."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise WebhookUrlError(f"the host does not resolve ({type(error).__name__})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise WebhookUrlError("the host does not resolve")
    if not allow_private:
        for text in addresses:
            address = _address(text.split("%", 1)[0])
            if address is None or not is_public(address):
                raise WebhookUrlError("the host resolves to an address that is not public")
    return addresses[0]
