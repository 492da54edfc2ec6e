"""``mnemo bench chaos``: a bounded soak under faults, then one summary line (docs/faults.md).

On loopback only, in a fresh folder: a PostgreSQL and a Redis of its own (``bench.chaos.servers``),
one ``mnemo api`` and ``--workers`` ``mnemo worker`` processes (tiny backbone). ``--users`` users
submit concepts (two sentinel images each, ``bench.chaos.audit.sentinel_image``) and generations,
while faults are injected:

* every API and worker process starts with one random crash point of its kind armed
  (``core.faults``; each start draws again), so it dies by SIGKILL the first time it passes there;
* every ``--fault-every`` seconds (on average) one of: SIGKILL a worker, SIGKILL the API,
  SIGKILL and restart Redis, wipe Redis (every message lost), crash and restart PostgreSQL.

A dead process is started again at once. The soak stops injecting after ``--faults`` faults or
``--minutes``, restarts everything disarmed, waits until every job is final, stops the workers and
audits (``bench.chaos.audit``): jobs accepted, completed exactly once, lost, run twice, lineage
violations, raw bytes left, orphan files left — the target is 0 for all but the first two.
``--out`` gets ``soak.json``, rewritten after every fault and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos import audit
from bench.chaos.servers import PostgresServer, RedisServer
from core import faults
from core.cli import processes
from core.db.session import make_session_factory
from core.storage import LocalStore

API_POINTS = tuple(name for name in faults.POINTS if name.startswith("api."))
WORKER_POINTS = tuple(name for name in faults.POINTS if not name.startswith("api."))
EXTERNAL = ("kill_worker", "kill_api", "restart_redis", "wipe_redis", "restart_postgres")
EXTERNAL_WEIGHTS = (4, 2, 2, 1, 2)
START_TIMEOUT = 90.0
API_SHARE = 0.4  # an API start arms a point this much less often than a worker start
KEY = re.compile(r"(mnemo_[A-Za-z0-9_-]{43})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=40.0, help="stop injecting after this long")
    parser.add_argument("--faults", type=int, default=200, help="stop injecting after this many faults")
    parser.add_argument("--users", type=int, default=3, help="users submitting work")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one pool process each)")
    parser.add_argument("--fault-every", type=float, default=6.0, help="mean seconds between external faults")
    parser.add_argument(
        "--crash-probability", type=float, default=0.6, help="chance that a worker start arms a crash point"
    )
    parser.add_argument("--steps", type=int, default=6, help="training steps per concept")
    parser.add_argument("--settle-minutes", type=float, default=15.0, help="limit of the final wait")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault and workload draws")
    parser.add_argument("--out", type=Path, default=None, help="folder for soak.json (default: none)")
    parser.add_argument("--work-dir", type=Path, default=None, help="a fresh folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data) afterwards")


@dataclass
class Tally:
    """What the soak did, written to ``soak.json`` as it goes."""

    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    injected: dict[str, int] = field(default_factory=dict)
    submitted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by HTTP status or client error
    summary: dict[str, Any] = field(default_factory=dict)
    line: str = ""

    @property
    def faults(self) -> int:
        return sum(self.injected.values())

    def count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1


@dataclass
class Fleet:
    """The soak's servers and service processes, and the environment they run with."""

    root: Path
    rng: random.Random
    crash_probability: float
    redis: RedisServer
    postgres: PostgresServer
    port: int = field(default_factory=processes.free_port)
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    armed: bool = True
    started: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, points: tuple[str, ...] = (), *, probability: float = 0.0) -> dict[str, str]:
        """The service's environment; with ``probability`` one of ``points`` is armed (docs/faults.md)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
        env.update(
            MNEMO_DATA_DIR=str(self.data_dir),
            MNEMO_DATABASE_URL=self.postgres.url,
            MNEMO_BROKER_URL=self.redis.url,
            MNEMO_BACKBONE="tiny",
            MNEMO_ENGINE_PRESET="tiny",
            MNEMO_HOST="127.0.0.1",
            MNEMO_PORT=str(self.port),
            MNEMO_JOB_LEASE_SECONDS="5",
            MNEMO_JOB_HEARTBEAT_SECONDS="1",
            MNEMO_JOB_MAX_ATTEMPTS="25",
            MNEMO_GENERATE_DEFAULT_STEPS="2",
            MNEMO_API_KEY_PEPPER="chaos-soak-pepper",
            OMP_WAIT_POLICY="PASSIVE",
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        if points and self.armed and self.rng.random() < probability:
            env.update(
                {
                    faults.ENABLED_ENV: "1",
                    faults.ARM_ENV: self.rng.choice(points),
                    faults.LEDGER_ENV: str(self.ledger),
                    faults.TIMES_ENV: "1000000",
                }
            )
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            processes.mnemo_command(*args), env=self.env(), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"mnemo {args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start_api(self) -> None:
        # The API dies at its point on the next upload: armed less often, or it would rarely answer.
        env = self.env(API_POINTS, probability=self.crash_probability * API_SHARE)
        self.api = self._start(("api", "--log-level", "warning"), env=env, log="api")

    def start_worker(self) -> None:
        env = self.env(WORKER_POINTS, probability=self.crash_probability)
        self.workers.append(self._start(("worker", "--concurrency", "1"), env=env, log="worker"))

    def _start(self, args: tuple[str, ...], *, env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log_path = self.logs / f"{log}-{self.started}.log"
        return processes.start(processes.mnemo_command(*args), env=env, log_path=log_path)

    def replace_dead(self) -> int:
        """Start a new process for each one that exited; returns how many died."""
        died = 0
        if self.api is None or self.api.poll() is not None:
            died += self.api is not None
            self.start_api()
        for worker in [w for w in self.workers if w.poll() is not None]:
            self.workers.remove(worker)
            self.start_worker()
            died += 1
        return died

    def stop_processes(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None:
                processes.stop(process, timeout=10)
        self.workers, self.api = [], None

    def inject(self, kind: str) -> None:
        """One external fault."""
        if kind == "kill_worker" and self.workers:
            processes.kill(self.rng.choice(self.workers))
        elif kind == "kill_api" and self.api is not None:
            processes.kill(self.api)
        elif kind == "restart_redis":
            self.redis.restart()
        elif kind == "wipe_redis":
            self.redis.wipe()
        elif kind == "restart_postgres":
            self.postgres.restart()


@dataclass
class Client:
    """The users' side: submissions, what was accepted, the sentinels of every upload sent."""

    fleet: Fleet
    rng: random.Random
    steps: int
    keys: dict[str, str] = field(default_factory=dict)
    accepted: list[audit.Accepted] = field(default_factory=list)
    secrets: list[bytes] = field(default_factory=list)
    sent: int = 0

    def create_users(self, count: int) -> None:
        for index in range(count):
            match = KEY.search(self.fleet.cli("users", "create", f"chaos{index}"))
            assert match, "mnemo users create printed no key"
            self.keys[f"chaos{index}"] = match.group(1)

    def submit(self) -> str | None:
        """One concept (2 images) or one generation for a random user; None if it was accepted,
        else why not (the HTTP status, or the client error's type)."""
        user = self.rng.choice(sorted(self.keys))
        headers = {"Authorization": f"Bearer {self.keys[user]}"}
        self.sent += 1
        try:
            with httpx.Client(base_url=self.fleet.base_url, timeout=30.0) as http:
                if self.rng.random() < 0.6:
                    return self._concept(http, headers)
                return self._generation(http, headers)
        except httpx.HTTPError as error:
            return type(error).__name__

    def _concept(self, http: httpx.Client, headers: dict[str, str]) -> str | None:
        files = []
        for index in range(2):
            data, secrets = audit.sentinel_image(self.rng.randrange(2**31))
            self.secrets += secrets
            files.append(("images", (f"photo-{index}.png", data, "image/png")))
        form = {"name": f"c{self.sent}", "steps": str(self.steps)}
        return self._record(http.post("/v1/concepts", headers=headers, data=form, files=files), kind="train")

    def _generation(self, http: httpx.Client, headers: dict[str, str]) -> str | None:
        n = self.rng.choice((1, 2))
        body = {"prompt": "a photo of a thing", "n": n, "steps": 2, "seed": self.rng.randrange(1000)}
        return self._record(http.post("/v1/generate", headers=headers, json=body), kind="generate", images=n)

    def _record(self, response: httpx.Response, *, kind: str, images: int = 0) -> str | None:
        if response.status_code != 202:
            return f"HTTP {response.status_code}"
        self.accepted.append(audit.Accepted(job_id=response.json()["job"]["id"], kind=kind, images=images))
        return None


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)  # the finally below stops every child and server
    rng = random.Random(args.seed)
    root = (args.work_dir or Path(tempfile.mkdtemp(prefix="mnemo-chaos-"))).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(folder=root / "redis").start()
    postgres = PostgresServer().start()
    fleet = Fleet(
        root=root, rng=rng, crash_probability=args.crash_probability, redis=redis, postgres=postgres
    )
    for folder in (fleet.data_dir, fleet.logs, fleet.ledger):
        folder.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    try:
        fleet.cli("db", "upgrade")
        client = Client(fleet=fleet, rng=rng, steps=args.steps)
        client.create_users(args.users)
        _start(fleet, workers=args.workers)
        _inject(fleet, client, tally, args=args)
        _settle(fleet, client, tally, args=args)
        _audit(fleet, client, tally)
    finally:
        tally.seconds = round(time.time() - tally.started, 1)
        _write(tally, args.out)
        fleet.stop_processes()
        redis.close()
        postgres.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(asdict(tally), indent=2) if args.json else tally.line)
    return 0 if _all_zero(tally.summary) else 1


def _exit_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _start(fleet: Fleet, *, workers: int) -> None:
    fleet.start_api()
    processes.wait_http_ok(f"{fleet.base_url}/readyz", timeout=START_TIMEOUT, process=fleet.api)
    for _ in range(workers):
        fleet.start_worker()


def _inject(fleet: Fleet, client: Client, tally: Tally, *, args: argparse.Namespace) -> None:
    """Submit work and inject faults until ``--faults`` or ``--minutes``."""
    deadline = time.monotonic() + args.minutes * 60
    next_fault = time.monotonic() + fleet.rng.expovariate(1 / args.fault_every)
    while tally.faults < args.faults and time.monotonic() < deadline:
        crashed = len(faults.fired(fleet.ledger))
        tally.injected["crash_point"] = crashed
        died = fleet.replace_dead()
        if time.monotonic() >= next_fault:
            kind = fleet.rng.choices(EXTERNAL, weights=EXTERNAL_WEIGHTS)[0]
            fleet.inject(kind)
            tally.count(kind)
            next_fault = time.monotonic() + fleet.rng.expovariate(1 / args.fault_every)
        if _unfinished(client) < 2 * len(client.keys):
            tally.submitted += 1
            refusal = client.submit()
            if refusal:
                tally.refused[refusal] = tally.refused.get(refusal, 0) + 1
        if died:
            _write(tally, args.out)
        time.sleep(0.5)


def _unfinished(client: Client) -> int:
    """Accepted jobs not final yet (a cheap read; 0 when the database is down)."""
    from sqlalchemy import func, select

    from core.db.models import Job

    factory = make_session_factory(client.fleet.postgres.url)
    try:
        with factory() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running")))
                )
            )
    except Exception:
        return 1_000_000
    finally:
        factory.kw["bind"].dispose()


def _settle(fleet: Fleet, client: Client, tally: Tally, *, args: argparse.Namespace) -> None:
    """Everything restarted disarmed; wait until every job is final and no upload row remains."""
    fleet.armed = False
    fleet.stop_processes()
    _start(fleet, workers=args.workers)
    deadline = time.monotonic() + args.settle_minutes * 60
    while time.monotonic() < deadline:
        fleet.replace_dead()
        factory = make_session_factory(fleet.postgres.url)
        try:
            if _unfinished(client) == 0 and audit.upload_rows(factory) == 0:
                return
        finally:
            factory.kw["bind"].dispose()
        time.sleep(1.0)


def _audit(fleet: Fleet, client: Client, tally: Tally) -> None:
    fleet.stop_processes()
    factory = make_session_factory(fleet.postgres.url)
    try:
        fates = audit.job_fates(factory, client.accepted)
        violations = audit.lineage_violations(factory, LocalStore(fleet.data_dir))
        swept, orphans = audit.sweep_orphans(factory, data_dir=fleet.data_dir)
        rows = audit.upload_rows(factory)
    finally:
        factory.kw["bind"].dispose()
    folders = [fleet.data_dir, fleet.logs, fleet.redis.folder, fleet.postgres.folder]
    blobs = {"pg_dump": fleet.postgres.dump(), "redis": fleet.redis.dump()}
    residue = audit.residue(client.secrets, folders=folders, blobs=blobs)
    for name in faults.fired(fleet.ledger):
        tally.injected[f"crash_point:{name}"] = tally.injected.get(f"crash_point:{name}", 0) + 1
    tally.injected.pop("crash_point", None)
    tally.summary = {
        "accepted": len(client.accepted),
        "completed_exactly_once": len(fates.exactly_once),
        "lost": len(fates.lost),
        "run_twice": len(fates.run_twice),
        "lineage_violations": len(violations),
        "raw_bytes_left": len(residue) + rows,
        "orphans_left": len(orphans),
        "orphans_swept": swept,
        "details": {"lost": fates.lost, "run_twice": fates.run_twice, "lineage": violations[:20]}
        | {"residue": residue[:20], "orphans": orphans[:20]},
    }
    summary = tally.summary
    tally.line = (
        f"chaos: {(time.time() - tally.started) / 60:.1f} min, {tally.faults} faults injected | "
        f"accepted {summary['accepted']}, completed exactly once {summary['completed_exactly_once']}, "
        f"lost {summary['lost']}, run twice {summary['run_twice']}, "
        f"lineage violations {summary['lineage_violations']}, raw bytes left {summary['raw_bytes_left']}, "
        f"orphans left {summary['orphans_left']}"
    )


def _all_zero(summary: dict[str, Any]) -> bool:
    keys = ("lost", "run_twice", "lineage_violations", "raw_bytes_left", "orphans_left")
    return bool(summary) and all(summary[key] == 0 for key in keys)


def _write(tally: Tally, out: Path | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    tally.seconds = round(time.time() - tally.started, 1)
    (out / "soak.json").write_text(json.dumps(asdict(tally), indent=2) + "\n")
