"""The webhook relay: sends committed deliveries, retries failed ones, never blocks a job.

``Relay.run_once`` claims due deliveries (``core.db.webhook_deliveries.claim_due``) and hands each
to a small thread pool; it returns at once. A worker's main process runs it every
``MNEMO_WEBHOOK_RELAY_INTERVAL_SECONDS`` in a thread of its own (``worker.webhook_relay``), so no
job's training or request ever waits for a receiver. Each webhook has at most one delivery in
flight, so a receiver that never answers holds one thread for one timeout at a time while the
others go on delivering (docs/webhooks.md, "Delivery and retries").
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from core.db.webhook_deliveries import Claimed, RetryPolicy, claim_due, record_attempt
from core.settings import Settings
from core.webhooks.sender import SendResult, send
from core.webhooks.signing import secret_check, secret_for

log = logging.getLogger(__name__)
# A claimed attempt's lease: its timeout (connect, write and read) and some slack.
LEASE_SLACK_SECONDS = 10.0
WRONG_PEPPER = (
    "this process cannot derive the webhook secret: give every process the same MNEMO_API_KEY_PEPPER"
)


@dataclass(frozen=True)
class RelayConfig:
    timeout_seconds: float
    allow_private: bool
    threads: int
    policy: RetryPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayConfig:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private_addresses,
            threads=settings.webhook_relay_threads,
            policy=RetryPolicy(
                max_attempts=settings.webhook_max_attempts,
                base_seconds=settings.webhook_retry_base_seconds,
                max_seconds=settings.webhook_retry_max_seconds,
            ),
        )

    @property
    def lease_seconds(self) -> float:
        return 3 * self.timeout_seconds + LEASE_SLACK_SECONDS


class Relay:
    """Claims and sends deliveries on a thread pool; ``close()`` when done."""

    def __init__(self, *, session_factory: sessionmaker[Session], pepper: bytes, config: RelayConfig) -> None:
        self.session_factory = session_factory
        self.pepper = pepper
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="mnemo-webhook")
        self._in_flight: dict[str, Future[str]] = {}  # webhook id -> its delivery being sent
        self._lock = threading.Lock()

    def run_once(self) -> list[Future[str]]:
        """Start sending what is due (as many as there are free threads); each future gives the
        delivery's status after its attempt."""
        with self._lock:
            self._in_flight = {hook: f for hook, f in self._in_flight.items() if not f.done()}
            free = self.config.threads - len(self._in_flight)
            if free <= 0:
                return []
            claimed = claim_due(
                self.session_factory,
                limit=free,
                lease_seconds=self.config.lease_seconds,
                busy_webhooks=frozenset(self._in_flight),
            )
            started = []
            for item in claimed:
                future = self._pool.submit(self._deliver, item)
                self._in_flight[item.outgoing.webhook_id] = future
                started.append(future)
            return started

    def _deliver(self, item: Claimed) -> str:
        try:
            return self._attempt(item)
        except Exception as error:  # the database is down: the claim's lease runs out, it is retried
            log.warning(
                "webhook delivery %s not recorded: %s", item.outgoing.delivery_id, type(error).__name__
            )
            raise

    def _attempt(self, item: Claimed) -> str:
        outgoing = item.outgoing
        secret = secret_for(pepper=self.pepper, salt=item.secret_salt)
        if secret_check(secret) != item.secret_check:
            result = SendResult(None, WRONG_PEPPER)
        else:
            result = send(
                outgoing,
                secret=secret,
                timeout=self.config.timeout_seconds,
                allow_private=self.config.allow_private,
            )
        status = record_attempt(
            self.session_factory, outgoing=outgoing, result=result, policy=self.config.policy
        )
        if not result.ok:  # ids and a reason only: never the URL (it may hold a token) or the body
            log.info(
                "webhook delivery %s attempt %d: %s (%s)",
                outgoing.delivery_id,
                outgoing.attempt,
                result.error,
                status,
            )
        return status

    def close(self) -> None:
        """Stop taking work; attempts in flight finish (each within its timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
