"""A Redis and a PostgreSQL server of one's own, on spare loopback ports, to kill, restart and wipe.

The fault-injection tests and the chaos soak (docs/faults.md) restart and wipe servers; they do it
to servers they started here, never to the machine's shared ones. Each server lives in a fresh
folder, answers only on 127.0.0.1, and is removed by ``close()``.

* ``RedisServer``: ``redis-server`` with an append-only file fsynced on every write (the
  production setting of docker-compose.yml), so ``restart()`` keeps queued messages and ``wipe()``
  (``FLUSHALL``) loses them, as a lost Redis volume would.
* ``PostgresServer``: ``initdb`` once (trust auth on loopback), ``pg_ctl`` to start; ``restart()``
  stops it in immediate mode — no shutdown checkpoint, a crash as far as PostgreSQL can tell — and
  starts it again (crash recovery replays the WAL). PostgreSQL refuses to run as root: as root the
  server runs as the ``postgres`` user, in a folder outside the caller's (private) temp dirs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.cli import processes

START_TIMEOUT = 30.0


def postgres_bin(name: str) -> str:
    """The path of a PostgreSQL program (``initdb``, ``pg_ctl``, ``pg_dump``), newest version first."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found (install PostgreSQL's server binaries)")
    return found


@dataclass
class RedisServer:
    """``redis-server`` on a spare port; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    folder: Path
    port: int = field(default_factory=processes.free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
        self.process = processes.start(args, log_path=self.folder / "redis.log")
        self._wait_ping()
        return self

    def kill(self) -> None:
        """SIGKILL the server (what it had fsynced to its append-only file survives)."""
        if self.process is not None:
            processes.kill(self.process)
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def wipe(self) -> None:
        """Delete every key: every queued and unacknowledged message is lost."""
        self.client().flushall()

    def client(self):  # -> redis.Redis
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=3, socket_timeout=10)

    def dump(self) -> bytes:
        """Every key and its serialised value, concatenated (for a byte search)."""
        client = self.client()
        parts = []
        for key in client.scan_iter(count=500):
            parts += [key, client.dump(key) or b""]
        return b"\n".join(parts)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_ping(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.client().ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.1)


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of its own on a spare port; ``url`` names its ``postgres`` database."""

    port: int = field(default_factory=processes.free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mnemo-pg-")))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._initdb()
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = str(self.folder / "pg.log")
        pg_ctl = [postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log]
        self._as_owner([*pg_ctl, "-w", "-t", str(int(START_TIMEOUT)), "start"])
        return self

    def kill(self) -> None:
        """Stop at once, no shutdown checkpoint (a crash: the next start replays the WAL)."""
        if (self.data / "postmaster.pid").exists():
            self._as_owner([postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def restart(self) -> None:
        self.kill()
        self.start()

    def dump(self) -> bytes:
        """``pg_dump`` of the database (schema and rows), for a byte search."""
        return subprocess.run(
            [postgres_bin("pg_dump"), "--no-owner", self.libpq_url],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _initdb(self) -> None:
        owner = _server_user()
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self._as_owner(
            [postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        )

    def _as_owner(self, args: list[str]) -> None:
        owner = _server_user()
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT + 30,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            cwd=self.folder,
        )


def _server_user() -> pwd.struct_passwd | None:
    """The ``postgres`` account when running as root (PostgreSQL refuses root), else None."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None
