"""``mnemo bench dashboard``: server time of the admin dashboard's heaviest pages, at scale.

For each backend (a SQLite file in a temp dir; a scratch PostgreSQL database
``mnemo_bench_dashboard_<pid>``, created and dropped here) the project's Alembic migrations are
run, then the database is seeded through the project's models (ORM bulk inserts): ``--users``
users with API keys and ``--tasks-per-user`` tasks each, plus one user with ``--heavy-tasks``
tasks, every task as the worker leaves it (concept, train job in one of several states with
timestamps, phase seconds, attempts and loss curves, uploads while it is not final, an adapter
version with its parent, manifest sha256 and Fisher state when it succeeded, the preview strips
of the last ``--previews`` concepts after it, an occasional generate job).

The real ASGI app (``api.app.create_app``) then serves in process, in this event loop
(``httpx.ASGITransport``: the time around a request is server time, without sockets), logged in
through ``/admin/login`` with the admin's key like a browser:

* ``/admin`` (the users page, first page) and its last page (keyset cursor),
* ``/admin/users/{heavy}`` (the history page: lineage, preview strips, task timeline, first page)
  and its oldest page,
* for reference the JSON API: ``GET /v1/admin/users`` and ``GET /v1/admin/users/{heavy}/tasks``.

Before timing, every paginated list is walked to its end to check that all users and all tasks
are reachable. Each timed response must be a 200 with the expected number of rows, so an error
page can never be what was timed. Reported per page and backend: p50/p95/max ms over
``--repeats`` requests after ``--warmups``, the response size, the SQL statements per request,
and pass/fail against the 200 ms target (p95).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET_MS = 200.0
DEFAULT_POSTGRES_URL = os.environ.get(
    "MNEMO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
PEPPER = "bench-dashboard-pepper"
ADMIN_NAME = "bench-admin"
HEAVY_NAME = "heavy-user"
CHUNK = 2000

USER_ROW = re.compile(r'<tr data-user="')
TASK_ROW = re.compile(r'<li class="task" data-job="')
LINEAGE_NODE = re.compile(r'<g class="node[^"]*" data-version="')
STRIP_ROW = re.compile(r'<tr class="strip"')
STRIP_COLUMN = re.compile(r"<th>after task \d+</th>")
NEXT_LINK = re.compile(r'<a href="([^"]*\?cursor=[^"]+)">')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL server URL allowed to CREATE/DROP DATABASE (a scratch database is made on it)",
    )
    parser.add_argument(
        "--broker-url", default=DEFAULT_BROKER_URL, help="broker the users page checks (memory:// for none)"
    )
    parser.add_argument(
        "--users", type=int, default=1000, help="ordinary users (plus the heavy user and the admin)"
    )
    parser.add_argument("--tasks-per-user", type=int, default=3, help="tasks of each ordinary user")
    parser.add_argument("--heavy-tasks", type=int, default=1000, help="tasks of the heavy user")
    parser.add_argument(
        "--previews", type=int, default=8, help="concepts previewed after each task (MNEMO_PREVIEW_CONCEPTS)"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmups", type=int, default=3, help="untimed requests per page first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated rows")
    parser.add_argument("--out", type=Path, default=None, help="write dashboard.json and README.md here")
    parser.add_argument("--note", default="", help="what else ran on the machine (goes into the results)")


# ---- the scale and the seeded rows ------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    users: int
    tasks_per_user: int
    heavy_tasks: int
    previews: int
    images_per_preview: int = 2
    uploads_per_task: int = 5
    generate_every: int = 5  # one generate job after every N train tasks


@dataclass
class Timeline:
    """One user's history while it is being generated: the clock and the counters the worker keeps."""

    user: dict[str, Any]
    clock: datetime
    seq: int = 0
    task_index: int = 0
    head: str | None = None
    ready: list[tuple[str, str, int]] = field(default_factory=list)  # (concept id, token, task index)
    tasks: int = 0


@dataclass(frozen=True)
class Seeded:
    admin_key: str
    heavy_user_id: str
    users: int  # every user row, the admin included
    heavy_tasks: int
    heavy_versions: int
    previews: int  # concepts previewed after each task
    rows: dict[str, int]
    seconds: float


class Rows:
    """Rows to insert, per model; inserted in ``models()`` order (parents before children)."""

    def __init__(self) -> None:
        self.tables: dict[type, list[dict[str, Any]]] = {model: [] for model in self.models()}

    @staticmethod
    def models() -> tuple[type, ...]:
        from core.db import models as m

        return (
            m.User,
            m.ApiKey,
            m.Concept,
            m.Job,
            m.Upload,
            m.Outbox,
            m.AdapterVersion,
            m.FisherState,
            m.Generation,
            m.GeneratedImage,
            m.Preview,
        )

    def add(self, model: type, **values: Any) -> str:
        from core.db.models import new_id

        values.setdefault("id", new_id())
        self.tables[model].append(values)
        return values["id"]


def seed(factory: Any, *, scale: Scale, pepper: bytes, rng: random.Random) -> Seeded:
    """Generate every row in memory, then bulk-insert them in one transaction."""
    from core.db.models import Role, User, utcnow

    began = time.perf_counter()
    rows = Rows()
    start = utcnow() - timedelta(days=400)
    admin = _user(rows, name=ADMIN_NAME, role=Role.ADMIN.value, created=start, pepper=pepper, rng=rng)
    heavy = _user(rows, name=HEAVY_NAME, created=start + timedelta(seconds=1), pepper=pepper, rng=rng)
    lines = [_history(rows, heavy[0], tasks=scale.heavy_tasks, active=3, scale=scale, rng=rng)]
    for index in range(scale.users):
        created = start + timedelta(seconds=2 + index)
        user, _ = _user(rows, name=f"user{index:05d}", created=created, pepper=pepper, rng=rng)
        active = rng.choices((0, 1, 2), weights=(90, 6, 4))[0]
        lines.append(_history(rows, user, tasks=scale.tasks_per_user, active=active, scale=scale, rng=rng))
    _insert(factory, rows=rows, heads=[(line.user["id"], line.head) for line in lines if line.head])
    heavy_line = lines[0]
    return Seeded(
        admin_key=admin[1],
        heavy_user_id=heavy[0]["id"],
        users=len(rows.tables[User]),
        heavy_tasks=heavy_line.tasks,
        heavy_versions=heavy_line.task_index,
        previews=scale.previews,
        rows={model.__tablename__: len(values) for model, values in rows.tables.items()},
        seconds=round(time.perf_counter() - began, 2),
    )


def _insert(factory: Any, *, rows: Rows, heads: list[tuple[str, str]]) -> None:
    from sqlalchemy import insert, update

    from core.db.models import User

    with factory.begin() as session:
        for model, values in rows.tables.items():
            for begin in range(0, len(values), CHUNK):
                session.execute(insert(model), values[begin : begin + CHUNK])
        # The head is a foreign key into adapter_versions: set once the versions exist.
        session.execute(
            update(User), [{"id": user, "current_adapter_version_id": head} for user, head in heads]
        )


def _user(
    rows: Rows, *, name: str, created: datetime, pepper: bytes, rng: random.Random, role: str = "user"
) -> tuple[dict[str, Any], str]:
    """A user row (its counters are filled in by ``_history``) with one active key; some have an
    older revoked key too. Returns the row and the active key."""
    from core.db.models import User

    user_id = rows.add(
        User, name=name, role=role, disabled=role == "user" and rng.random() < 0.02, created_at=created
    )
    user = rows.tables[User][-1]
    if rng.random() < 0.2:
        _key(
            rows, user_id=user_id, pepper=pepper, created_at=created, revoked_at=created + timedelta(days=30)
        )
    used = created + timedelta(days=rng.uniform(1, 390))
    key = _key(rows, user_id=user_id, pepper=pepper, created_at=created, last_used_at=used)
    return user, key


def _key(rows: Rows, *, user_id: str, pepper: bytes, **times: datetime) -> str:
    """An API key row as ``core.db.users`` issues it (prefix, peppered hash); returns the key."""
    from core.db.models import ApiKey
    from core.db.users import PREFIX_CHARS, hash_key, new_key

    key = new_key()
    rows.add(
        ApiKey, user_id=user_id, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key, pepper=pepper), **times
    )
    return key


def _history(
    rows: Rows, user: dict[str, Any], *, tasks: int, active: int, scale: Scale, rng: random.Random
) -> Timeline:
    """``tasks`` train tasks (the last ``active`` of them running/queued), generate jobs between."""
    from core.db.models import JobState

    line = Timeline(user=user, clock=user["created_at"] + timedelta(hours=1))
    active = min(active, tasks)
    for index in range(tasks):
        remaining = tasks - index
        if remaining > active:
            state = rng.choices(
                (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED), weights=(90, 7, 3)
            )[0]
        else:
            state = JobState.RUNNING if remaining == active else JobState.QUEUED
        _train_task(rows, line, state=state, scale=scale, rng=rng)
        if scale.generate_every and (index + 1) % scale.generate_every == 0 and remaining > active:
            _generate_job(rows, line, rng=rng)
    user.update(next_task_index=line.task_index + 1, next_job_seq=line.seq + 1)
    return line


def _advance(line: Timeline, rng: random.Random) -> datetime:
    line.clock += timedelta(minutes=rng.uniform(5, 240))
    line.seq += 1
    return line.clock


CURVE_STEPS = {"train": 1000, "dsc": 200, "fisher": 200}  # the paper preset, the longest curves
CURVE_POINTS = 200  # worker/curves.py keeps at most 200 points per phase


def _phase_seconds(rng: random.Random) -> dict[str, float]:
    means = {"prepare": 4.0, "train": 95.0, "dsc": 19.0, "fisher": 17.0}
    return {phase: round(max(0.5, rng.gauss(mean, mean / 8)), 3) for phase, mean in means.items()}


def _curves(rng: random.Random, *, upto: str | None = None) -> dict[str, list[list[float]]]:
    """Downsampled loss curves as ``jobs.loss_curves`` holds them (phases up to ``upto``, half of it)."""
    curves: dict[str, list[list[float]]] = {}
    for phase, steps in CURVE_STEPS.items():
        points = min(CURVE_POINTS, steps)
        if upto == phase:
            points //= 2
        level = rng.uniform(0.08, 0.2)
        curves[phase] = [
            [
                round((k + 1) * steps / min(CURVE_POINTS, steps)),
                round(level * (1 + 2 / (k + 2)) + rng.gauss(0, 0.01), 5),
            ]
            for k in range(points)
        ]
        if upto == phase:
            break
    return curves


def _digest(rng: random.Random) -> str:
    return hashlib.sha256(rng.randbytes(16)).hexdigest()


def _concept_status(state: Any) -> str:
    """A concept's status while its train job is in ``state`` (queued, failed, cancelled: the same)."""
    from core.db.models import ConceptStatus, JobState

    named = {JobState.SUCCEEDED: ConceptStatus.READY, JobState.RUNNING: ConceptStatus.TRAINING}
    return (named[state] if state in named else ConceptStatus(state.value)).value


def _train_task(rows: Rows, line: Timeline, *, state: Any, scale: Scale, rng: random.Random) -> None:
    """One concept and its train job as the API and the worker leave it in ``state``."""
    from core.db.models import Concept, Job, JobState

    queued = _advance(line, rng)
    line.tasks += 1
    name = f"c{line.seq:05d}"
    user_id = line.user["id"]
    seconds = _phase_seconds(rng)
    final = state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    started = queued + timedelta(seconds=rng.uniform(0.2, 30)) if state != JobState.QUEUED else None
    finished = started + timedelta(seconds=sum(seconds.values())) if final and started else None
    request = {
        "name": name,
        "token": f"<{name}>",
        "class_word": rng.choice((None, "shape", "toy", "object")),
        "method": "dsc_ewc_dc",
        "steps": CURVE_STEPS["train"],
    }
    concept_id = rows.add(
        Concept,
        user_id=user_id,
        status=_concept_status(state),
        images_deleted_at=finished + timedelta(seconds=1) if finished else None,
        created_at=queued,
        **request,
    )
    job_id = rows.add(
        Job,
        user_id=user_id,
        kind="train",
        concept_id=concept_id,
        seq=line.seq,
        state=state.value,
        payload={"concept_id": concept_id, **request},  # what create_train_job writes
        max_attempts=3,
        created_at=queued,
        started_at=started,
        finished_at=finished,
        **_state_fields(state, rng=rng, started=started),
    )
    if state == JobState.SUCCEEDED:
        _publish(
            rows, line, job=rows.tables[Job][-1], concept=rows.tables[Concept][-1], seconds=seconds, rng=rng
        )
        _previews(rows, line, job_id=job_id, scale=scale, rng=rng)
    if not final:
        _uploads_and_message(rows, job_id=job_id, queued=queued, scale=scale, rng=rng)


def _state_fields(state: Any, *, rng: random.Random, started: datetime | None) -> dict[str, Any]:
    """Progress, attempts, lease, error and curves of a train job in ``state``."""
    from core.db.models import JobState

    if state == JobState.QUEUED:
        return {"progress": {"phase": "queued", "step": 0, "total": 0, "loss": None}, "attempts": 0}
    if state == JobState.RUNNING:
        assert started is not None
        return {
            "progress": {"phase": "dsc", "step": 100, "total": 200, "loss": 0.11},
            "attempts": 1,
            "fencing_token": 1,
            "lease_owner": "bench-worker:4242",
            "lease_expires_at": started + timedelta(minutes=5),
            "heartbeat_at": started + timedelta(seconds=110),
            "loss_curves": _curves(rng, upto="dsc"),
        }
    attempts = 3 if state == JobState.FAILED else rng.choices((1, 2), weights=(90, 10))[0]
    total = CURVE_STEPS["fisher"]
    fields: dict[str, Any] = {
        "progress": {"phase": "done", "step": total, "total": total, "loss": 0.1},
        "attempts": attempts,
        "fencing_token": attempts,
        "loss_curves": _curves(rng) if state == JobState.SUCCEEDED else _curves(rng, upto="train"),
    }
    if state == JobState.FAILED:
        fields["error"] = "RuntimeError: the loss became NaN at step 512 (attempt 3 of 3)"
    if state == JobState.CANCELLED:
        fields["cancel_requested"] = True
    return fields


def _publish(
    rows: Rows,
    line: Timeline,
    *,
    job: dict[str, Any],
    concept: dict[str, Any],
    seconds: dict[str, float],
    rng: random.Random,
) -> None:
    """The adapter version (parent = the user's head), its Fisher state, the concept's metrics."""
    from core.db.models import AdapterVersion, FisherState
    from core.storage import manifest_sha256

    line.task_index += 1
    version_id = rows.add(AdapterVersion)  # the id first: the path names it
    path = f"adapters/{line.user['id']}/{version_id}"
    files = {
        "lora.safetensors": {"sha256": _digest(rng), "bytes": 1_200_000 + rng.randrange(4096)},
        "token.safetensors": {"sha256": _digest(rng), "bytes": 3_200},
        "fisher.safetensors": {"sha256": _digest(rng), "bytes": 1_200_000 + rng.randrange(4096)},
    }
    rows.tables[AdapterVersion][-1].update(
        user_id=line.user["id"],
        concept_id=concept["id"],
        job_id=job["id"],
        parent_id=line.head,
        task_index=line.task_index,
        method=concept["method"],
        path=path,
        files=files,
        sha256=manifest_sha256(files),
        size_bytes=sum(f["bytes"] for f in files.values()),
        created_at=job["finished_at"],
    )
    fisher = files["fisher.safetensors"]
    rows.add(
        FisherState,
        user_id=line.user["id"],
        adapter_version_id=version_id,
        job_id=job["id"],
        path=f"{path}/fisher.safetensors",
        sha256=fisher["sha256"],
        bytes=fisher["bytes"],
        created_at=job["finished_at"],
    )
    losses = {phase: points[-1][1] for phase, points in job["loss_curves"].items()}
    metrics = {
        "final_loss": losses["train"],
        "final_losses": losses,
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 3),
        "train_steps": CURVE_STEPS["train"],
        "images": 5,
    }
    concept.update(task_index=line.task_index, metrics=metrics)
    job["result"] = {"adapter_version_id": version_id, "task_index": line.task_index, "metrics": metrics}
    line.head = version_id
    line.ready.append((concept["id"], concept["token"], line.task_index))


def _images(
    rows: Rows, *, user_id: str, generation_id: str, count: int, at: datetime, rng: random.Random
) -> list[str]:
    from core.db.models import GeneratedImage, new_id

    return [
        rows.add(
            GeneratedImage,
            user_id=user_id,
            generation_id=generation_id,
            path=f"images/{new_id()}.png",
            sha256=_digest(rng),
            width=64,
            height=64,
            created_at=at,
        )
        for _ in range(count)
    ]


def _previews(rows: Rows, line: Timeline, *, job_id: str, scale: Scale, rng: random.Random) -> None:
    """After task n: a fixed-seed preview of each of the last ``scale.previews`` learned concepts."""
    from core.db.models import Generation, Preview

    chosen = line.ready[-scale.previews :] if scale.previews else []
    if not chosen:
        return
    at = line.clock + timedelta(minutes=3)
    user_id = line.user["id"]
    prompt = "a photo of " + " ".join(token for _, token, _ in chosen)
    generation_id = rows.add(
        Generation, user_id=user_id, job_id=job_id, prompt=prompt, params={"kind": "preview"}, created_at=at
    )
    for concept_id, token, task_index in chosen:
        age = line.task_index - task_index
        rows.add(
            Preview,
            user_id=user_id,
            concept_id=concept_id,
            job_id=job_id,
            after_task_index=line.task_index,
            token=token,
            seed=0,
            image_ids=_images(
                rows,
                user_id=user_id,
                generation_id=generation_id,
                count=scale.images_per_preview,
                at=at,
                rng=rng,
            ),
            retention=100.0 if age == 0 else round(max(40.0, 100 - 4 * age + rng.gauss(0, 2)), 2),
            features=None if age == 0 else "toy-classifier",
            created_at=at,
        )


def _uploads_and_message(
    rows: Rows, *, job_id: str, queued: datetime, scale: Scale, rng: random.Random
) -> None:
    """A job that is not final still has its raw uploads and its (sent) broker message."""
    from core.db.models import Outbox, Upload, new_id
    from core.queue.names import TRAIN_TASK_NAME

    for _ in range(scale.uploads_per_task):
        rows.add(
            Upload,
            job_id=job_id,
            path=f"uploads/{new_id()}",
            sha256=_digest(rng),
            bytes=rng.randrange(20_000, 80_000),
            created_at=queued,
        )
    rows.add(Outbox, job_id=job_id, task_name=TRAIN_TASK_NAME, created_at=queued, sent_at=queued, attempts=1)


def _generate_job(rows: Rows, line: Timeline, *, rng: random.Random) -> None:
    """A finished generate job between the train tasks (the history page must skip it)."""
    from core.db.models import Generation, Job

    queued = _advance(line, rng)
    user_id = line.user["id"]
    finished = queued + timedelta(seconds=rng.uniform(1, 5))
    params = {"negative_prompt": "", "n": 2, "steps": 25, "guidance_scale": 7.5, "seed": line.seq}
    job_id = rows.add(
        Job,
        user_id=user_id,
        kind="generate",
        seq=line.seq,
        state="succeeded",
        progress={"phase": "done", "step": 25, "total": 25, "loss": None},
        attempts=1,
        fencing_token=1,
        created_at=queued,
        started_at=queued + timedelta(seconds=0.3),
        finished_at=finished,
    )
    prompt = "a photo of " + (line.ready[-1][1] if line.ready else "a shape")
    generation_id = rows.add(
        Generation, user_id=user_id, job_id=job_id, prompt=prompt, params=params, created_at=queued
    )
    image_ids = _images(rows, user_id=user_id, generation_id=generation_id, count=2, at=finished, rng=rng)
    rows.tables[Job][-1].update(
        payload={"generation_id": generation_id, "prompt": prompt, **params},
        result={"generation_id": generation_id, "image_ids": image_ids},
    )


# ---- the databases ----------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(backend: str, *, postgres_url: str, workdir: Path) -> Iterator[str]:
    """A fresh database URL for ``backend``, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'db' / 'mnemo.db'}"
        return
    if backend != "postgres":
        raise SystemExit(f"error: unknown backend {backend!r} (sqlite, postgres)")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"mnemo_bench_dashboard_{os.getpid()}"
    server = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


# ---- the measurement --------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One timed request and what its response must contain."""

    name: str
    kind: str  # "page" or "api"
    path: str
    rows: int  # rows the response must hold
    counts: Callable[[Any], int]
    shows: str  # what the rows are, in words
    checks: tuple[tuple[str, Callable[[Any], int], int], ...] = ()  # (what, counter, expected)
    headers: dict[str, str] = field(default_factory=dict)


def _html_rows(pattern: re.Pattern[str]) -> Callable[[Any], int]:
    return lambda response: len(pattern.findall(response.text))


def _json_rows(key: str) -> Callable[[Any], int]:
    return lambda response: len(response.json()[key])


class StatementCounter:
    """SQL statements the app's engine ran since the last ``reset``."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def reset(self) -> None:
        self.count = 0


def _verified(probe: Probe, response: Any) -> None:
    """A 200 with the expected rows, or the bench stops: an error page is never what was timed."""
    if response.status_code != 200:
        raise SystemExit(
            f"error: {probe.name} {probe.path} answered {response.status_code}: {response.text[:300]}"
        )
    found = probe.counts(response)
    if found != probe.rows:
        raise SystemExit(f"error: {probe.name} {probe.path} shows {found} rows, expected {probe.rows}")
    for what, counter, expected in probe.checks:
        if counter(response) != expected:
            raise SystemExit(f"error: {probe.name} shows {counter(response)} {what}, expected {expected}")


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


async def time_probe(
    client: Any, probe: Probe, *, statements: StatementCounter, warmups: int, repeats: int
) -> dict[str, Any]:
    for _ in range(warmups):
        _verified(probe, await client.get(probe.path, headers=probe.headers))
    samples, cpu, sizes, queries = [], [], [], []
    for _ in range(repeats):
        statements.reset()
        begin, begin_cpu = time.perf_counter(), time.process_time()
        response = await client.get(probe.path, headers=probe.headers)
        samples.append(1000 * (time.perf_counter() - begin))
        cpu.append(1000 * (time.process_time() - begin_cpu))
        queries.append(statements.count)
        _verified(probe, response)
        sizes.append(len(response.content))
    ordered = sorted(samples)
    p95 = _percentile(ordered, 0.95)
    return {
        "name": probe.name,
        "kind": probe.kind,
        "path": probe.path.split("?", 1)[0] + ("?cursor=…" if "?" in probe.path else ""),
        "rows": probe.rows,
        "shows": probe.shows,
        "bytes": max(sizes),
        "sql_statements": max(queries),
        "p50_ms": round(_percentile(ordered, 0.50), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(sum(samples) / len(samples), 2),
        "cpu_p50_ms": round(_percentile(sorted(cpu), 0.50), 2),
        "target_ms": TARGET_MS,
        "pass": p95 <= TARGET_MS,
    }


async def _login(client: Any, *, key: str) -> None:
    """Log in through the form like a browser: the session cookie stays in the client."""
    form = await client.get("/admin/login")
    token = CSRF.search(form.text)
    response = await client.post(
        "/admin/login",
        data={"api_key": key, "csrf_token": token.group(1) if token else ""},
        follow_redirects=False,
    )
    if response.status_code != 303:
        raise SystemExit(f"error: the admin login failed: {response.status_code} {response.text[:300]}")


async def _walk(client: Any, path: str, *, rows: re.Pattern[str]) -> tuple[int, str, int, int]:
    """Follow a page's "next" links to the end: (rows seen, the last page with rows, its rows, its
    number). A full page always links to a next one, so after an exact multiple the list ends on an
    empty page: that one is walked but not timed."""
    total, pages, last = 0, 0, (path, 0, 1)
    while True:
        response = await client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"error: {path} answered {response.status_code}")
        found = len(rows.findall(response.text))
        total, pages = total + found, pages + 1
        if found or pages == 1:
            last = (path, found, pages)
        following = NEXT_LINK.search(response.text)
        if following is None:
            return total, *last
        path = following.group(1)


def preview_grid(seeded: Seeded) -> tuple[int, int]:
    """(task columns, concept strips) the history page must show for the seeded heavy user: the
    last ``PREVIEW_TASKS`` published tasks and the concepts previewed after them (a concept is
    previewed after its own task and the ``previews - 1`` next ones), at most ``PREVIEW_STRIPS``."""
    from api.dashboard.pages import PREVIEW_STRIPS, PREVIEW_TASKS

    published = seeded.heavy_versions
    if not published or not seeded.previews:
        return 0, 0
    first = max(1, published - PREVIEW_TASKS + 1)
    oldest_previewed = max(1, first - seeded.previews + 1)
    return published - first + 1, min(PREVIEW_STRIPS, published - oldest_previewed + 1)


async def probes(client: Any, seeded: Seeded) -> list[Probe]:
    """The pages and API calls to time, after checking that every user and task is reachable."""
    from api.dashboard.pages import LINEAGE_VERSIONS, TASKS_PER_PAGE, USERS_PER_PAGE
    from api.routes.admin import DEFAULT_PAGE as API_USERS_PAGE
    from api.routes.admin_read import DEFAULT_PAGE as API_TASKS_PAGE

    users, last_users, last_user_rows, user_pages = await _walk(client, "/admin", rows=USER_ROW)
    history = f"/admin/users/{seeded.heavy_user_id}"
    tasks, last_tasks, last_task_rows, task_pages = await _walk(client, history, rows=TASK_ROW)
    if users != seeded.users or tasks != seeded.heavy_tasks:
        raise SystemExit(
            f"error: the pages list {users} users and {tasks} tasks; "
            f"seeded {seeded.users} and {seeded.heavy_tasks}"
        )
    lineage_shown = min(LINEAGE_VERSIONS, seeded.heavy_versions)
    lineage = ("lineage versions", _html_rows(LINEAGE_NODE), lineage_shown)
    columns, shown = preview_grid(seeded)
    strips = ("preview strips", _html_rows(STRIP_ROW), shown)
    grid = ("preview columns", _html_rows(STRIP_COLUMN), columns)
    bearer = {"Authorization": f"Bearer {seeded.admin_key}"}
    return [
        Probe(
            "users page",
            "page",
            "/admin",
            min(USERS_PER_PAGE, users),
            _html_rows(USER_ROW),
            f"first page: {USERS_PER_PAGE} per page, {user_pages} pages for {users} users",
        ),
        Probe(
            "users page, last",
            "page",
            last_users,
            last_user_rows,
            _html_rows(USER_ROW),
            f"page {user_pages}, the last (keyset cursor)",
        ),
        Probe(
            "history page",
            "page",
            history,
            min(TASKS_PER_PAGE, tasks),
            _html_rows(TASK_ROW),
            f"newest {TASKS_PER_PAGE} of {tasks} tasks, last {lineage_shown} of {seeded.heavy_versions} "
            f"lineage versions, {shown} preview strips × {columns} tasks",
            checks=(lineage, strips, grid),
        ),
        Probe(
            "history page, oldest",
            "page",
            last_tasks,
            last_task_rows,
            _html_rows(TASK_ROW),
            f"page {task_pages}, the oldest (keyset cursor)",
            checks=(lineage, strips, grid),
        ),
        Probe(
            "GET /v1/admin/users",
            "api",
            "/v1/admin/users",
            min(API_USERS_PAGE, users),
            _json_rows("users"),
            f"first {API_USERS_PAGE} users with totals",
            headers=bearer,
        ),
        Probe(
            "GET /v1/admin/users/{id}/tasks",
            "api",
            f"/v1/admin/users/{seeded.heavy_user_id}/tasks",
            min(API_TASKS_PAGE, tasks),
            _json_rows("tasks"),
            f"newest {API_TASKS_PAGE} tasks",
            headers=bearer,
        ),
    ]


async def _time_app(app: Any, seeded: Seeded, *, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Log in, then time every probe through the app in this event loop (``httpx.ASGITransport``:
    no sockets, no server thread; sync routes run in the app's thread pool as under uvicorn)."""
    import httpx

    statements = StatementCounter(app.state.services.session_factory.kw["bind"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await _login(client, key=seeded.admin_key)
        return [
            await time_probe(client, probe, statements=statements, warmups=args.warmups, repeats=args.repeats)
            for probe in await probes(client, seeded)
        ]


def measure_backend(backend: str, *, args: argparse.Namespace, scale: Scale) -> dict[str, Any]:
    """Migrate, seed and time every probe on one backend."""
    from api.app import create_app
    from core.db.migrate import upgrade
    from core.db.session import make_session_factory
    from core.settings import Settings

    with tempfile.TemporaryDirectory(prefix=f"mnemo-bench-dashboard-{backend}-") as folder:
        workdir = Path(folder)
        with scratch_database(backend, postgres_url=args.postgres_url, workdir=workdir) as url:
            began = time.perf_counter()
            upgrade(database_url=url)
            migrate_seconds = round(time.perf_counter() - began, 2)
            settings = Settings(
                data_dir=workdir / "data", database_url=url, broker_url=args.broker_url, api_key_pepper=PEPPER
            )
            factory = make_session_factory(url)
            try:
                seeded = seed(factory, scale=scale, pepper=settings.pepper, rng=random.Random(args.seed))
            finally:
                factory.kw["bind"].dispose()
            print(
                f"dashboard: {backend} migrated in {migrate_seconds} s, "
                f"seeded {sum(seeded.rows.values())} rows in {seeded.seconds} s",
                file=sys.stderr,
            )
            app = create_app(settings, dispatcher=lambda: None)
            try:
                timed = asyncio.run(_time_app(app, seeded, args=args))
            finally:
                app.state.services.session_factory.kw["bind"].dispose()
    return {
        "backend": backend,
        "migrate_seconds": migrate_seconds,
        "seed_seconds": seeded.seconds,
        "rows": seeded.rows,
        "users": seeded.users,
        "heavy_user_tasks": seeded.heavy_tasks,
        "pages": timed,
    }


# ---- the report -------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


@dataclass(frozen=True)
class CpuClock:
    """Where the machine's and this process's CPU time stood (``/proc/stat``; Linux only)."""

    wall: float
    process: float
    machine_busy: float | None  # CPU-seconds all processes ran since boot

    @staticmethod
    def now() -> CpuClock:
        busy = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
        return CpuClock(wall=time.monotonic(), process=time.process_time(), machine_busy=busy)


def cpu_share(start: CpuClock, end: CpuClock) -> dict[str, float | None]:
    """% of all CPUs busy during the run: all processes, this bench, the others (the database too)."""
    capacity = (end.wall - start.wall) * (os.cpu_count() or 1) / 100
    mine = (end.process - start.process) / capacity
    if start.machine_busy is None or end.machine_busy is None:
        return {"all_percent": None, "this_bench_percent": round(mine, 1), "others_percent": None}
    everyone = (end.machine_busy - start.machine_busy) / capacity
    return {
        "all_percent": round(everyone, 1),
        "this_bench_percent": round(mine, 1),
        "others_percent": round(max(0.0, everyone - mine), 1),
    }


def _machine(*, start: CpuClock, load_at_start: list[float] | None) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average": load_average(),
        "cpu_during_run": cpu_share(start, CpuClock.now()),
    }


OPTIONS = (
    "backends",
    "broker_url",
    "users",
    "tasks_per_user",
    "heavy_tasks",
    "previews",
    "repeats",
    "warmups",
    "seed",
)


def command(args: argparse.Namespace) -> str:
    """The command line that reruns this measurement (every scale option spelled out)."""
    options = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in OPTIONS]
    if args.out is not None:
        options.append(f"--out {args.out}")
    return "mnemo bench dashboard " + " ".join(options)


def report(
    args: argparse.Namespace,
    *,
    scale: Scale,
    backends: list[dict[str, Any]],
    start: CpuClock,
    load_at_start: list[float] | None,
) -> dict[str, Any]:
    return {
        "bench": "dashboard",
        "command": command(args),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "target_ms": TARGET_MS,
        "verdict": "p95 of each page and API call ≤ target_ms",
        "scale": asdict(scale),
        "repeats": args.repeats,
        "warmups": args.warmups,
        "broker_url": args.broker_url,
        "machine": _machine(start=start, load_at_start=load_at_start),
        "note": args.note,
        "seconds": round(time.monotonic() - start.wall, 1),
        "backends": backends,
        "pass": all(page["pass"] for b in backends for page in b["pages"]),
    }


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'backend':<9} {'page':<32} {'rows':>5} {'KiB':>7} {'SQL':>4} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CPU p50':>8}  verdict",
    ]
    for backend in summary["backends"]:
        for page in backend["pages"]:
            verdict = "pass" if page["pass"] else "FAIL"
            lines.append(
                f"{backend['backend']:<9} {page['name']:<32} {page['rows']:>5} {page['bytes'] / 1024:>7.1f} "
                f"{page['sql_statements']:>4} {page['p50_ms']:>8.1f} {page['p95_ms']:>8.1f} "
                f"{page['max_ms']:>8.1f} {page['cpu_p50_ms']:>8.1f}  {verdict}"
            )
    lines.append(
        f"target: p95 ≤ {summary['target_ms']:.0f} ms server time; "
        f"overall {'pass' if summary['pass'] else 'FAIL'}"
    )
    for backend in summary["backends"]:
        for page in backend["pages"]:
            lines.append(f"  {backend['backend']} {page['name']}: {page['shows']}")
        break
    return "\n".join(lines)


README = """# bench dashboard results

`{command}` on {date}.

Machine: {machine}; load average (1, 5, 15 min) {load_start} at the start, {load} at the end.
During the run the CPUs were {busy}% busy on average: {mine}% this bench, {others}% other processes
(the PostgreSQL server among them). {note}

Scale: {users} user rows ({ordinary} users with {per_user} tasks each, one user with {heavy} tasks, the
admin); {repeats} timed requests per page after {warmups} warm-ups, in process through the real
ASGI app (`httpx.ASGITransport`), logged in through `/admin/login`. Target: p95 ≤ {target:.0f} ms.

```
{table}
```

Columns: rows the response must hold (checked on every request), the largest response, the most
SQL statements one request ran, wall-clock ms per request (p50 / p95 / max; the verdict is on the
p95) and the median CPU ms of this process per request (on PostgreSQL the database server's own
CPU is not in it), which shows how much of the wall time other jobs on the machine took.
`dashboard.json` has every number (and the seeded row counts per table).
"""


def write_results(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(summary, indent=2) + "\n")
    machine = summary["machine"]
    scale = summary["scale"]
    (out / "README.md").write_text(
        README.format(
            command=summary["command"],
            date=summary["date"],
            machine=f"{machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}",
            load=machine["load_average"],
            load_start=machine["load_average_at_start"],
            busy=machine["cpu_during_run"]["all_percent"],
            mine=machine["cpu_during_run"]["this_bench_percent"],
            others=machine["cpu_during_run"]["others_percent"],
            note=summary["note"],
            users=summary["backends"][0]["users"] if summary["backends"] else 0,
            ordinary=scale["users"],
            per_user=scale["tasks_per_user"],
            heavy=scale["heavy_tasks"],
            repeats=summary["repeats"],
            warmups=summary["warmups"],
            target=summary["target_ms"],
            table=table(summary),
        )
    )


def run(args: argparse.Namespace) -> int:
    start, load_at_start = CpuClock.now(), load_average()
    scale = Scale(
        users=args.users,
        tasks_per_user=args.tasks_per_user,
        heavy_tasks=args.heavy_tasks,
        previews=args.previews,
    )
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    backends = [measure_backend(name, args=args, scale=scale) for name in names]
    summary = report(args, scale=scale, backends=backends, start=start, load_at_start=load_at_start)
    if args.out is not None:
        write_results(args.out, summary)
    print(json.dumps(summary, indent=2) if getattr(args, "json", False) else table(summary))
    return 0
