"""The webhook relay thread of a worker's main process (``core.webhooks.relay``; docs/webhooks.md).

Started with the reconciler when the worker is ready (``worker.signals``): it never runs in a pool
process, so a receiver that never answers costs a relay thread its timeout and no job anything.
Several workers may each run one; the claims keep them from sending the same attempt twice.
Once an hour it deletes finished deliveries older than ``MNEMO_WEBHOOK_RETENTION_DAYS``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from core.db.session import make_session_factory
from core.db.webhook_deliveries import prune_finished
from core.settings import Settings
from core.webhooks.relay import Relay, RelayConfig
from worker.loops import DaemonLoop

log = logging.getLogger(__name__)
PRUNE_EVERY_SECONDS = 3600.0


class WebhookRelayLoop(DaemonLoop):
    """Runs ``Relay.run_once`` every ``webhook_relay_interval_seconds`` until ``stop()``."""

    thread_name = "mnemo-webhook-relay"

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.webhook_relay_interval_seconds
        super().__init__()

    def _run(self) -> None:
        session_factory = make_session_factory(self.settings.database_url)
        relay = Relay(
            session_factory=session_factory,
            pepper=self.settings.pepper,
            config=RelayConfig.from_settings(self.settings),
        )
        last_prune = float("-inf")
        try:
            while not self._stop.wait(self.interval):
                try:
                    relay.run_once()
                    if time.monotonic() - last_prune >= PRUNE_EVERY_SECONDS:
                        last_prune = time.monotonic()
                        days = timedelta(days=self.settings.webhook_retention_days)
                        prune_finished(session_factory, older_than=days)
                except Exception as error:  # the database is down: try again next round
                    log.warning("webhook relay pass failed: %s", type(error).__name__)
        finally:
            relay.close()
