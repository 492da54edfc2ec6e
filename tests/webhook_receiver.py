"""A real HTTP receiver on loopback for the webhook tests: records every request, answers by script.

``Receiver(statuses=[500, 503])`` answers 500, then 503, then 200 to everything after;
``Receiver(hang=True)`` accepts each request, reads it and never answers (until ``close()``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: str
    at: float  # time.monotonic() when it arrived

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    def __init__(self, *, statuses: list[int] | None = None, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.received: list[Received] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/mnemo"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(Received(headers=headers, body=body, at=time.monotonic()))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.hang:
                    receiver._released.wait(120)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def wait_for(self, count: int, *, timeout: float) -> list[Received]:
        """The first ``count`` requests, once they arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.received)} of {count} requests after {timeout} s: {self.events()}"
            )
            time.sleep(0.02)
        return self.received[:count]

    def events(self) -> list[str]:
        return [request.document["type"] for request in list(self.received)]

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
