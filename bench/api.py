"""``mnemo bench api``: what the service costs on top of the engine, and how fast it answers.

1. **/v1/generate overhead.** The embedded service (``mnemo serve``: API + a Celery worker
   process, SQLite, the SQLAlchemy broker) on a fresh data directory. After one warm-up
   request (the worker loads the backbone once), ``--requests`` sequential
   ``POST /v1/generate`` with ``wait`` are timed at the client, each followed by the same
   generation as a direct ``core.engine.generate.generate`` call in this process on the same
   backbone, user state and settings (interleaved, so drifting background load hits both).
   overhead = median(end to end) / median(direct) − 1 (target ≤ 10 %).
2. **Job-status polling.** ``--clients`` concurrent HTTP clients on loopback poll
   ``GET /v1/jobs/{id}`` for ``--poll-seconds`` (at most ``--poll-requests`` requests):
   p50/p99 latency and requests per second.

With ``--concept-steps N`` one bundled sample concept is trained first and every prompt uses
its token (the user state then holds an adapter); by default prompts use no token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from core import progress
from core.cli import processes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone", default=None, help="toy | tiny | SD folder (default MNEMO_BACKBONE or toy)"
    )
    parser.add_argument("--preset", default=None, help="engine preset (default: per backbone)")
    parser.add_argument("--requests", type=int, default=5, help="timed generate requests (and direct calls)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps per generation")
    parser.add_argument("--n", type=int, default=1, help="images per generation")
    parser.add_argument(
        "--concept-steps", type=int, default=0, help="train one concept first (0: no concept)"
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent polling clients")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="polling duration")
    parser.add_argument("--poll-requests", type=int, default=20000, help="cap on polling requests")
    parser.add_argument("--data-dir", type=Path, default=None, help="a fresh folder (default: temp dir)")
    parser.add_argument("--timeout", type=float, default=900.0, help="overall limit in seconds")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the worker (core/cli/service.py)
    backbone = args.backbone or os.environ.get("MNEMO_BACKBONE") or "toy"
    preset = args.preset or ("tiny" if backbone == "tiny" else "toy" if backbone == "toy" else "paper")
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="mnemo-bench-api-"))).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    env = processes.embedded_environment(
        data_dir=data_dir,
        backbone=backbone,
        preset=preset,
        port=port,
        MNEMO_GENERATE_MAX_STEPS=str(max(args.steps, 150)),
    )

    from core.db.migrate import upgrade
    from core.db.session import make_session_factory, write_transaction
    from core.db.users import create_user
    from core.settings import get_settings

    settings = get_settings()
    upgrade(database_url=settings.database_url)
    factory = make_session_factory(settings.database_url)
    with write_transaction(factory) as session:
        issued = create_user(session, name="bench", pepper=settings.pepper)
        user_id = issued.user.id
    headers = {"Authorization": f"Bearer {issued.key}"}
    log_path = data_dir / "logs" / "serve.log"
    base_url = f"http://127.0.0.1:{port}"
    prompt = "a photo of a shape"
    serve = processes.start(processes.mnemo_command("serve", "--no-upgrade"), env=env, log_path=log_path)
    try:
        processes.wait_http_ok(f"{base_url}/readyz", timeout=120, process=serve)
        with httpx.Client(base_url=base_url, headers=headers, timeout=args.timeout) as http:
            if args.concept_steps:
                prompt = _train_concept(http, steps=args.concept_steps, deadline=started + args.timeout)
            params = {"prompt": prompt, "n": args.n, "steps": args.steps, "guidance_scale": 7.5}
            direct_call = _direct_caller(settings=settings, factory=factory, user_id=user_id, params=params)
            _generate(http, {**params, "seed": 10_000})  # warm-up: the worker loads the backbone
            direct_call(10_000)  # warm-up of the in-process engine
            # Interleaved (service, direct, service, ...) so that drifting background load hits both.
            end_to_end, worker_side, queue_wait, direct = [], [], [], []
            api_in: list[float] = []  # request sent -> job row written
            api_out: list[float] = []  # job finished -> response received
            for seed in progress.bar(range(args.requests), desc="api: /v1/generate vs direct", every=15.0):
                seconds, job = _generate(http, {**params, "seed": seed})
                end_to_end.append(seconds)
                worker_side.append(_span(job))
                queue_wait.append(_span(job, start="created_at", end="started_at"))
                api_in.append(_span(job, start="_sent", end="created_at"))
                api_out.append(_span(job, start="finished_at", end="_received"))
                direct.append(direct_call(seed))
            job_id = job["id"]
        polling = asyncio.run(
            _poll(
                base_url,
                headers,
                job_id=job_id,
                clients=args.clients,
                seconds=args.poll_seconds,
                cap=args.poll_requests,
            )
        )
    finally:
        processes.stop(serve, timeout=20)

    summary = _summary(
        backbone=backbone,
        preset=preset,
        args=args,
        end_to_end=end_to_end,
        worker_side=worker_side,
        queue_wait=queue_wait,
        api_in=api_in,
        api_out=api_out,
        direct=direct,
        polling=polling,
    )
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


def _train_concept(http: httpx.Client, *, steps: int, deadline: float) -> str:
    import io

    from core.engine.toy.concepts import sample_concepts

    sample = sample_concepts(photos=False)[0]
    files = []
    for index, image in enumerate(sample.images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        files.append(("images", (f"{index}.png", buffer.getvalue(), "image/png")))
    data = {"name": sample.name, "class_word": sample.class_word, "steps": str(steps)}
    response = http.post("/v1/concepts", data=data, files=files)
    response.raise_for_status()
    job_id = response.json()["job"]["id"]
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "succeeded":
            return f"a photo of <{sample.name}>"
        if job["state"] in ("failed", "cancelled") or time.monotonic() > deadline:
            raise SystemExit(f"error: the bench concept did not train: {job['state']} {job.get('error')}")
        time.sleep(0.5)


def _generate(http: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Client-side seconds of one ``wait`` request, and its job (with the client's wall-clock
    send/receive times added as ``_sent``/``_received``, same clock as the server's: loopback)."""
    sent, begin = time.time(), time.perf_counter()
    response = http.post("/v1/generate", json={**body, "wait": 600})
    seconds = time.perf_counter() - begin
    result = response.json()
    if response.status_code != 200 or result["job"]["state"] != "succeeded":
        raise SystemExit(f"error: generate failed: {response.status_code} {response.text[:500]}")
    return seconds, {**result["job"], "_sent": sent, "_received": sent + seconds}


def _span(job: dict[str, Any], *, start: str = "started_at", end: str = "finished_at") -> float:
    from datetime import datetime

    def at(key: str) -> float:
        value = job[key]
        return float(value) if isinstance(value, float) else datetime.fromisoformat(value).timestamp()

    return at(end) - at(start)


def _direct_caller(*, settings: Any, factory: Any, user_id: str, params: dict[str, Any]) -> Any:
    """``call(seed) -> seconds``: the same generation as a direct engine call in this process,
    on the same backbone, user state (from the same lineage files) and settings."""
    from core.db.jobs import user_lineage
    from core.engine.generate import generate
    from worker.runtime import Runtime

    runtime = Runtime(settings=settings)
    with factory() as session:
        chain = user_lineage(session, user_id=user_id)
    state = runtime.load_user_state(chain)
    backbone = runtime.backbone
    options = {k: v for k, v in params.items() if k != "prompt"}

    def call(seed: int) -> float:
        begin = time.perf_counter()
        generate(backbone=backbone, state=state, prompt=params["prompt"], seed=seed, **options)
        return time.perf_counter() - begin

    return call


async def _poll(
    base_url: str, headers: dict[str, str], *, job_id: str, clients: int, seconds: float, cap: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = started = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30.0) as http:

        async def client() -> None:
            nonlocal errors, started
            while time.perf_counter() < stop_at and started < cap:
                started += 1  # counted before the await: at most ``cap`` requests in all
                begin = time.perf_counter()
                try:
                    response = await http.get(f"/v1/jobs/{job_id}")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - begin)
                else:
                    errors += 1

        begin = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - begin
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_second": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(1000 * _quantile(latencies, 0.50), 2),
        "p99_ms": round(1000 * _quantile(latencies, 0.99), 2),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def _summary(**parts: Any) -> dict[str, Any]:
    args = parts["args"]
    e2e, direct, worker = parts["end_to_end"], parts["direct"], parts["worker_side"]
    median_e2e, median_direct = statistics.median(e2e), statistics.median(direct)
    return {
        "backbone": parts["backbone"],
        "preset": parts["preset"],
        "generate": {
            "requests": len(e2e),
            "steps": args.steps,
            "n": args.n,
            "concept": bool(args.concept_steps),
            "end_to_end_median_s": round(median_e2e, 4),
            "worker_job_median_s": round(statistics.median(worker), 4),
            "queue_wait_median_s": round(statistics.median(parts["queue_wait"]), 4),
            "request_to_job_row_median_s": round(statistics.median(parts["api_in"]), 4),
            "job_done_to_response_median_s": round(statistics.median(parts["api_out"]), 4),
            "direct_median_s": round(median_direct, 4),
            "overhead_ratio": round(median_e2e / median_direct - 1.0, 4),
            "target_overhead_ratio": 0.10,
            "end_to_end_s": [round(v, 4) for v in e2e],
            "direct_s": [round(v, 4) for v in direct],
        },
        "polling": parts["polling"],
    }


def _print(summary: dict[str, Any]) -> None:
    g, p = summary["generate"], summary["polling"]
    print(f"backbone {summary['backbone']} (preset {summary['preset']}), {g['steps']} steps, n={g['n']}")
    print(f"/v1/generate end to end  median {g['end_to_end_median_s']:.3f} s over {g['requests']} requests")
    print(f"  request -> job row median {g['request_to_job_row_median_s']:.3f} s (auth, validation, insert)")
    print(f"  job row -> claimed median {g['queue_wait_median_s']:.3f} s (commit, outbox send, worker poll)")
    print(f"  worker job (claim..publish) median {g['worker_job_median_s']:.3f} s")
    print(f"  job done -> response median {g['job_done_to_response_median_s']:.3f} s (API wait loop, reply)")
    print(f"direct generate()        median {g['direct_median_s']:.3f} s")
    verdict = "within" if g["overhead_ratio"] <= g["target_overhead_ratio"] else "ABOVE"
    print(f"overhead {100 * g['overhead_ratio']:.1f} % ({verdict} the 10 % target)")
    print(
        f"job polling: {p['clients']} clients, {p['requests']} requests in {p['seconds']} s "
        f"({p['requests_per_second']} req/s), p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
        f"errors {p['errors']}"
    )
