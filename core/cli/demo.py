"""``mnemo demo``: the whole product on one machine, in a few minutes on CPU.

1. a fresh data directory, ``db upgrade`` and a user (its key stays in this process);
2. ``mnemo serve`` in the background: the HTTP API and a real Celery worker process
   (SQLite, the server-less SQLAlchemy broker, the toy backbone);
3. three bundled sample concepts uploaded one at a time over HTTP (6 images each); a progress
   bar follows each job while the worker learns it (task 1, 2, 3: one continual LoRA);
4. after each task, ``EVAL_IMAGES`` images of every token learned so far, generated through
   ``POST /v1/generate`` with a fixed seed and scored by the toy's judge (recognition: shape,
   pattern and colours all read right; ``core.engine.toy.recognition``), so the printout shows
   each concept being learned and then kept;
5. after the last task, two tokens in one prompt (each half of the image judged);
6. a grid (the first concept right after its task and at the end, every token at the end, the
   two-token prompt), the recognition table by task (also ``recognition.json``), a per-concept
   table (token, task index, seconds, final loss, when the raw images were deleted) and a check
   that no raw upload is left in the data directory.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.cli import processes

FINAL = ("succeeded", "failed", "cancelled")
POLL_SECONDS = 0.5
PLAIN_EVERY = 10.0  # seconds between plain progress lines when the output is not a terminal
EVAL_IMAGES = 8  # per token after each task (recognition); the grid shows GRID_IMAGES of them
GRID_IMAGES = 4
GENERATE_STEPS = 25
CELL = 128
BAR_FORMAT = "{desc:<28} |{bar:30}| {n_fmt:>4}/{total_fmt:<4}{postfix}"


@dataclass
class DemoConcept:
    name: str
    class_word: str
    description: str
    images: list[Any]
    attributes: Any = None
    job_id: str = ""
    concept_id: str = ""

    @property
    def token(self) -> str:
        return f"<{self.name}>"


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    data_dir = _fresh_data_dir(args.data_dir)
    backbone = args.backbone or os.environ.get("MNEMO_BACKBONE") or "toy"
    preset = args.preset or os.environ.get("MNEMO_ENGINE_PRESET") or ("tiny" if backbone == "tiny" else "toy")
    if backbone == "toy":
        from core.engine.toy import WEIGHTS_DIR

        if not (WEIGHTS_DIR / "unet").is_dir():
            print(
                f"error: the toy backbone weights are missing ({WEIGHTS_DIR}); "
                "train them with `mnemo toy train`, or run `mnemo demo --backbone tiny`",
                file=sys.stderr,
            )
            return 2
    port = processes.free_port()
    env = processes.embedded_environment(data_dir=data_dir, backbone=backbone, preset=preset, port=port)
    print(f"mnemo demo: data in {data_dir}, backbone {backbone!r}, preset {preset!r}")

    from core.db.migrate import upgrade
    from core.db.session import make_session_factory, write_transaction
    from core.db.users import create_user
    from core.settings import get_settings

    settings = get_settings()
    upgrade(database_url=settings.database_url)
    with write_transaction(make_session_factory(settings.database_url)) as session:
        issued = create_user(session, name="demo", pepper=settings.pepper)
    headers = {"Authorization": f"Bearer {issued.key}"}

    log_path = data_dir / "logs" / "serve.log"
    serve = processes.start(processes.mnemo_command("serve", "--no-upgrade"), env=env, log_path=log_path)
    try:
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_http_ok(f"{base_url}/readyz", timeout=120, process=serve)
        print(f"service up at {base_url} (API + worker; log: {log_path})")
        with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as http:
            concepts = _samples(count=args.concepts)
            deadline = started + args.timeout
            jobs: dict[str, dict[str, Any]] = {}
            scores: list[dict[str, Score]] = []  # per task: token -> its images and recognition
            for task, concept in enumerate(concepts, start=1):
                _upload(http, concept, steps=args.steps)
                jobs.update(_follow(http, [concept], deadline=deadline, serve=serve, log_path=log_path))
                job = jobs[concept.job_id]
                if job["state"] != "succeeded":
                    print(f"  {concept.name}: {job['state']}: {job.get('error')}", file=sys.stderr)
                    return 1
                scores.append({c.token: _score(http, c) for c in concepts[:task]})
                _print_after_task(task, concept, scores[-1])
            pair = _score_pair(http, concepts) if len(concepts) >= 2 else None
            out = args.out.expanduser().resolve()
            grid = _write_grid(out, concepts, _grid_rows(concepts, scores, pair))
            _print_recognition(concepts, scores, pair)
            _write_recognition(out, concepts, scores, pair)
            _print_table(http, concepts, jobs)
            remaining = sum(1 for p in (data_dir / "uploads").rglob("*") if p.is_file())
            print(f"\nraw images left in {data_dir / 'uploads'}: {remaining} files")
            print(f"images: {out}  grid: {grid}")
    finally:
        processes.stop(serve, timeout=20)
    if args.data_dir is None and remaining == 0:
        shutil.rmtree(data_dir, ignore_errors=True)  # a temporary directory of ours; kept on failure
        print(f"removed the temporary data directory {data_dir}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0 if remaining == 0 else 1


def _fresh_data_dir(path: Path | None) -> Path:
    if path is None:
        return Path(tempfile.mkdtemp(prefix="mnemo-demo-")).resolve()
    path = path.expanduser().resolve()
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"error: {path} is not empty; the demo needs a fresh data directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _samples(*, count: int) -> list[DemoConcept]:
    from core.engine.toy.concepts import sample_concepts

    return [
        DemoConcept(s.name, s.class_word, s.description, s.images, s.attributes)
        for s in sample_concepts(photos=False)[:count]
    ]


def _upload(http: httpx.Client, concept: DemoConcept, *, steps: int | None) -> None:
    files = []
    for index, image in enumerate(concept.images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        files.append(("images", (f"{concept.name}-{index}.png", buffer.getvalue(), "image/png")))
    data = {"name": concept.name, "class_word": concept.class_word}
    if steps:
        data["steps"] = str(steps)
    response = http.post("/v1/concepts", data=data, files=files)
    if response.status_code != 202:
        raise SystemExit(f"error: upload of {concept.name} refused: {response.status_code} {response.text}")
    body = response.json()
    concept.job_id, concept.concept_id = body["job"]["id"], body["concept"]["id"]
    print(f"uploaded {concept.name!r} ({len(files)} images, token {concept.token}): job {concept.job_id}")


def _follow(
    http: httpx.Client,
    concepts: list[DemoConcept],
    *,
    deadline: float,
    serve: Any,
    log_path: Path,
) -> dict[str, dict[str, Any]]:
    """Progress bars (one per concept) until every job is final; on a non-terminal (a log file),
    plain lines instead of redrawn bars: one per phase change, and one every ``PLAIN_EVERY`` s."""
    from tqdm import tqdm

    plain = not sys.stdout.isatty()
    bars = {
        c.job_id: tqdm(
            total=1,
            desc=f"{c.name:<16} queued",
            position=i,
            leave=True,
            bar_format=BAR_FORMAT,
            disable=plain,
        )
        for i, c in enumerate(concepts)
    }
    said: dict[str, tuple[str, float]] = {}

    def say(job_id: str, text: str, phase: str) -> None:
        last = said.get(job_id)
        if plain and (last is None or last[0] != phase or time.monotonic() - last[1] >= PLAIN_EVERY):
            print(f"  {names[job_id]}: {text}", flush=True)
            said[job_id] = (phase, time.monotonic())

    names = {c.job_id: c.name for c in concepts}
    jobs: dict[str, dict[str, Any]] = {}
    try:
        while len(jobs) < len(concepts):
            if time.monotonic() > deadline:
                raise SystemExit(f"error: training did not finish in time; see {log_path}")
            if serve.poll() is not None:
                raise SystemExit(f"error: the service stopped (exit {serve.returncode}); see {log_path}")
            for job_id, bar in bars.items():
                if job_id in jobs:
                    continue
                job = http.get(f"/v1/jobs/{job_id}").json()
                progress = job.get("progress") or {}
                phase, step, total = (
                    progress.get("phase", "queued"),
                    progress.get("step", 0),
                    progress.get("total", 0),
                )
                loss = progress.get("loss")
                loss_text = "" if loss is None else f" loss {loss:.4f}"
                say(job_id, f"{job['state']} {phase} {step}/{total}{loss_text}", job["state"] + phase)
                if job["state"] in FINAL:
                    jobs[job_id] = job
                    bar.set_description(f"{names[job_id]:<16} {job['state']}")
                    bar.total = max(bar.total or 1, 1)
                    bar.n = bar.total if job["state"] == "succeeded" else bar.n
                    final_loss = ((job.get("result") or {}).get("metrics") or {}).get("final_loss")
                    bar.set_postfix_str(
                        f"final loss {final_loss:.4f}" if final_loss is not None else "", refresh=False
                    )
                    bar.refresh()
                    continue
                bar.set_description(f"{names[job_id]:<16} {phase}")
                bar.total = max(int(total), 1)
                bar.n = min(int(step), bar.total)
                bar.set_postfix_str(loss_text.strip(), refresh=False)
                bar.refresh()
            time.sleep(POLL_SECONDS)
    finally:
        for bar in bars.values():
            bar.close()
    return jobs


@dataclass
class Score:
    """A prompt's generated PNGs and the share of them the judge recognises (None: not judged)."""

    pngs: list[bytes]
    recognised: float | None


def _generate(http: httpx.Client, prompt: str) -> list[bytes]:
    """``EVAL_IMAGES`` PNGs of ``prompt`` (seed 0: the same noise after every task)."""
    body = {"prompt": prompt, "n": EVAL_IMAGES, "steps": GENERATE_STEPS, "seed": 0, "wait": 120}
    response = http.post("/v1/generate", json=body, timeout=180)
    result = response.json()
    if response.status_code != 200 or result["job"]["state"] != "succeeded":
        raise SystemExit(f"error: generation for {prompt!r} failed: {response.status_code} {response.text}")
    return [http.get(image["url"]).content for image in result["images"]]


def _recognised(images: list[Any], attributes: Any) -> float | None:
    if attributes is None:
        return None
    from core.engine.toy.recognition import recognition

    return recognition(images, attributes)["recognised"]


def _score(http: httpx.Client, concept: DemoConcept) -> Score:
    pngs = _generate(http, f"a photo of {concept.token}")
    return Score(pngs, _recognised([_png(p) for p in pngs], concept.attributes))


def _score_pair(http: httpx.Client, concepts: list[DemoConcept]) -> tuple[str, Score, Score]:
    """The first two tokens in one prompt; the left half judged as the first, the right as the second."""
    from core.engine.toy.recognition import halves

    first, second = concepts[0], concepts[1]
    prompt = f"a photo of {first.token} and {second.token}"
    pngs = _generate(http, prompt)
    lefts, rights = zip(*(halves(_png(p)) for p in pngs), strict=True)
    print(f"generated {len(pngs)} images for {prompt!r}")
    return (
        prompt,
        Score(pngs, _recognised(list(lefts), first.attributes)),
        Score(pngs, _recognised(list(rights), second.attributes)),
    )


def _png(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _print_after_task(task: int, concept: DemoConcept, scores: dict[str, Score]) -> None:
    judged = "  ".join(f"{token} {_percent(score.recognised)}" for token, score in scores.items())
    print(f"after task {task} ({concept.token}): recognised in {EVAL_IMAGES} images: {judged}")


def _grid_rows(
    concepts: list[DemoConcept], scores: list[dict[str, Score]], pair: tuple[str, Score, Score] | None
) -> list[tuple[str, list[bytes]]]:
    """The first concept right after its task, then every token after the last task, then the pair."""
    first = concepts[0].token
    rows = [(f"a photo of {first}  (after task 1)", scores[0][first].pngs[:GRID_IMAGES])]
    rows += [
        (f"a photo of {token}  (after task {len(scores)})", score.pngs[:GRID_IMAGES])
        for token, score in scores[-1].items()
    ]
    if pair is not None:
        rows.append((pair[0], pair[1].pngs[:GRID_IMAGES]))
    return rows


def _print_recognition(
    concepts: list[DemoConcept], scores: list[dict[str, Score]], pair: tuple[str, Score, Score] | None
) -> None:
    header = f"{'recognised':<20}" + "".join(f"{'after ' + str(t):>10}" for t in range(1, len(scores) + 1))
    print("\n" + header + "\n" + "-" * len(header))
    for concept in concepts:
        cells = [_percent(s[concept.token].recognised) if concept.token in s else "" for s in scores]
        print(f"{concept.token:<20}" + "".join(f"{c:>10}" for c in cells))
    if pair is not None:
        print(f"{pair[0]!r}: left {_percent(pair[1].recognised)}, right {_percent(pair[2].recognised)}")


def _write_recognition(
    out: Path,
    concepts: list[DemoConcept],
    scores: list[dict[str, Score]],
    pair: tuple[str, Score, Score] | None,
) -> None:
    import json

    by_task = [{token: score.recognised for token, score in s.items()} for s in scores]
    report: dict[str, Any] = {
        "images_per_token": EVAL_IMAGES,
        "recognition_after_task": by_task,
        "kept": {
            c.token: None
            if by_task[i][c.token] is None or by_task[-1][c.token] is None
            else {"just_learned": by_task[i][c.token], "at_the_end": by_task[-1][c.token]}
            for i, c in enumerate(concepts)
        },
    }
    if pair is not None:
        report["pair"] = {"prompt": pair[0], "left": pair[1].recognised, "right": pair[2].recognised}
    out.mkdir(parents=True, exist_ok=True)
    (out / "recognition.json").write_text(json.dumps(report, indent=2))


def _write_grid(out: Path, concepts: list[DemoConcept], rows: list[tuple[str, list[bytes]]]) -> Path:
    """Each prompt's images in a row, with the prompt written above; one bundled sample image
    of the concept (not from the service: it deleted them) at the row's start."""
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    label_h = 18
    columns = 1 + max(len(pngs) for _, pngs in rows)
    grid = Image.new("RGB", (columns * CELL, len(rows) * (CELL + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    samples = {c.token: c.images[0] for c in concepts}
    for row, (prompt, pngs) in enumerate(rows):
        top = row * (CELL + label_h)
        draw.text((4, top + 3), prompt, fill="black")
        reference = next((image for token, image in samples.items() if token in prompt), None)
        if reference is not None:
            grid.paste(reference.convert("RGB").resize((CELL, CELL)), (0, top + label_h))
            draw.rectangle((0, top + label_h, 46, top + label_h + 13), fill="black")
            draw.text((4, top + label_h + 1), "sample", fill="white")
        for column, png in enumerate(pngs, start=1):
            image = Image.open(io.BytesIO(png)).convert("RGB")
            image.save(out / f"row{row + 1}-{column}.png")
            grid.paste(image.resize((CELL, CELL), Image.Resampling.NEAREST), (column * CELL, top + label_h))
    path = out / "grid.png"
    grid.save(path)
    return path


def _print_table(http: httpx.Client, concepts: list[DemoConcept], jobs: dict[str, dict[str, Any]]) -> None:
    by_id = {c["id"]: c for c in http.get("/v1/concepts").json()["concepts"]}
    header = (
        f"{'concept':<16} {'token':<18} {'task':>4} {'seconds':>8} {'final loss':>10}  images deleted (UTC)"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for concept in concepts:
        row = by_id[concept.concept_id]
        job = jobs[concept.job_id]
        metrics = row.get("metrics") or {}
        seconds = metrics.get("total_seconds")
        if seconds is None and job.get("started_at") and job.get("finished_at"):
            from datetime import datetime

            seconds = (
                datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
            ).total_seconds()
        loss = metrics.get("final_loss")
        deleted = (row.get("images_deleted_at") or "no")[:19].replace("T", " ")
        seconds_text = "-" if seconds is None else f"{seconds:.1f}"
        loss_text = "-" if loss is None else f"{loss:.4f}"
        task = str(row["task_index"] or "-")
        print(f"{row['name']:<16} {row['token']:<18} {task:>4} {seconds_text:>8} {loss_text:>10}  {deleted}")
