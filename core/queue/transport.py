"""The server-less broker of the embedded mode: kombu's SQLAlchemy transport, polled faster.

kombu's virtual transports poll for messages every ``polling_interval`` seconds (1 s by
default): a generation that takes one second would wait up to another second to start. The
stock SQLAlchemy channel passes *every* transport option to ``create_engine`` and so cannot
take ``polling_interval``; this subclass removes it before, and polls every 0.1 s unless told
otherwise. It also deletes a message's row when it is delivered (the stock channel keeps every
delivered row forever). ``install()`` points kombu's ``sqla+`` / ``sqlalchemy+`` URL schemes at it (done by
``core.queue.app`` in every process that uses the broker).
"""

from __future__ import annotations

from json import loads
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import text

POLLING_INTERVAL_S = 0.1
ENGINE_EXCLUDED_OPTIONS = ("polling_interval",)


class Channel(SQLAlchemyChannel):
    def _get(self, queue: str) -> Any:
        """Take the oldest message of ``queue`` and delete its row.

        The stock channel only marks a delivered row invisible, so the broker file grows by one
        row per message forever; the in-memory QoS of the virtual transport (which re-publishes
        a rejected message) never needs the row again.
        """
        obj = self._get_or_create(queue)
        if self.session.bind.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            message = (
                self.session.query(self.message_cls)
                .with_for_update()
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_not(False))
                .order_by(self.message_cls.sent_at, self.message_cls.id)
                .limit(1)
                .first()
            )
            if message is None:
                raise Empty()
            payload = message.payload
            self.session.delete(message)
            return loads(bytes_to_str(payload))
        finally:
            self.session.commit()

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
