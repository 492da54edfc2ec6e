"""The server-less broker of the embedded mode: kombu's SQLAlchemy transport, polled faster.

kombu's virtual transports poll for messages every ``polling_interval`` seconds (1 s by
default): a generation that takes one second would wait up to another second to start. The
stock SQLAlchemy channel passes *every* transport option to ``create_engine`` and so cannot
take ``polling_interval``; this subclass removes it before, and polls every 0.05 s unless told
otherwise. ``install()`` points kombu's ``sqla+`` / ``sqlalchemy+`` URL schemes at it (done by
``worker.celery_app`` in every process that uses the broker).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

POLLING_INTERVAL_S = 0.05
ENGINE_EXCLUDED_OPTIONS = ("polling_interval",)


class Channel(SQLAlchemyChannel):
    def _engine_from_config(self) -> Any:
        client = self.connection.client
        saved = client.transport_options
        client.transport_options = {k: v for k, v in saved.items() if k not in ENGINE_EXCLUDED_OPTIONS}
        try:
            return super()._engine_from_config()
        finally:
            client.transport_options = saved


class Transport(SQLAlchemyTransport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL_S


def install() -> None:
    """Make ``sqla+<url>`` and ``sqlalchemy+<url>`` broker URLs use this transport."""
    for alias in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"
