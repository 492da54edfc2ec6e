"""What each ``mnemo`` sub-command's ``--help`` says beyond its options: a description and examples.

One table for the whole CLI (``PAGES``, keyed by the command path), applied by ``document`` to
the parser tree that ``core.cli.main.build_parser`` built, so the command modules keep only
their options and handlers. ``tests/test_cli_help.py`` checks that every command has a page.
"""

from __future__ import annotations

import argparse

Page = tuple[str, tuple[tuple[str, str], ...]]  # description, ((example, what it does), ...)

PAGES: dict[tuple[str, ...], Page] = {
    ("serve",): (
        "The all-in-one service: migrates the database, then runs the HTTP API and one Celery\n"
        "worker process (embedded default: SQLite database and broker in --data-dir, the toy\n"
        "backbone on CPU). Stop it with Ctrl-C; it stops its worker too.",
        (
            ("mnemo serve --data-dir ./mnemo-data", "the API on http://127.0.0.1:8000 (/docs, /admin)"),
            ("MNEMO_PORT=9000 mnemo serve", "another port (every option has an MNEMO_ variable)"),
        ),
    ),
    ("api",): (
        "The HTTP API alone (uvicorn), for deployments that run workers elsewhere: point\n"
        "--database-url and --broker-url at the shared PostgreSQL and Redis (docs/service.md).",
        (
            (
                "mnemo api --database-url postgresql+psycopg://mnemo@db/mnemo --broker-url redis://redis:6379/0",
                "the production API",
            ),
        ),
    ),
    ("worker",): (
        "A Celery worker that trains concepts (in each user's order) and generates images. Every\n"
        "pool process uses --device; run one worker per GPU (docs/service.md).",
        (
            ("mnemo worker --data-dir ./mnemo-data", "a worker for the embedded service's queues"),
            ("mnemo worker --device cuda:1 --queues mnemo.train", "training only, on the second GPU"),
        ),
    ),
    ("db", "upgrade"): (
        "Apply the database migrations (Alembic). `mnemo serve` does this itself at start.",
        (("mnemo db upgrade --data-dir ./mnemo-data", "migrate the embedded SQLite database"),),
    ),
    ("users", "create"): (
        "Create a user and print their API key once (only its hash is stored).",
        (
            ("mnemo users create alice --data-dir ./mnemo-data", "a user of the embedded service"),
            ("mnemo users create root --admin", "an admin: /v1/admin/* and the /admin dashboard"),
        ),
    ),
    ("users", "list"): (
        "List the users: name, role, whether disabled, when created.",
        (("mnemo users list --data-dir ./mnemo-data", "everyone on the embedded service"),),
    ),
    ("users", "rotate"): (
        "Issue a new API key (printed once) and revoke the old ones.",
        (("mnemo users rotate alice --keep-old", "a new key while the old one still works"),),
    ),
    ("users", "disable"): (
        "Disable a user: their keys stop working at once; their data stays until erased.",
        (
            ("mnemo users disable alice", "lock alice out"),
            ("mnemo users disable alice --enable", "let her back in"),
        ),
    ),
    ("demo",): (
        "Start the embedded service in a temporary directory, create a user, upload three bundled\n"
        "sample concepts (6 images each) one at a time, show each job's progress and the judge's\n"
        "recognition after every task, write a grid of generated images, and check that no raw\n"
        "upload is left. The temporary directory is removed at the end.",
        (
            ("mnemo demo", "the README's demo (about 3 minutes on 2 CPU cores)"),
            ("mnemo demo --concepts 2 --out /tmp/demo", "a shorter run, pictures elsewhere"),
        ),
    ),
    ("toy", "train"): (
        "Train the toy backbone from scratch on the procedural world (docs/toy.md): the VAE, then\n"
        "the UNet and text encoder within --minutes, then the judge classifier.\n"
        "See core/engine/toy/MODEL_CARD.md for the recipe of the shipped weights.",
        (
            (
                "mnemo toy train --what backbone --minutes 70 --threads 2 --unet-steps 10000 --out N",
                "the shipped run N",
            ),
            ("mnemo toy train --resume N --seed 1 --minutes 30 --out N2", "continue stage 2 of a run"),
        ),
    ),
    ("toy", "check"): (
        "Generate held-out prompts with the engine's sampler and score them with the judge:\n"
        "colour and shape of unseen colour x shape pairs, pattern and colours of unseen objects.",
        (
            ("mnemo toy check --quick", "16 images, about 30 seconds"),
            ("mnemo toy check --backbone N --json", "the full check of a trained folder"),
        ),
    ),
    ("toy", "samples"): (
        "Write the images of a bundled sample concept (docs/toy.md) as PNG files, e.g. to upload\n"
        "with curl. Names: bullseye, striped-square, smiley, checkered-triangle, dotted-heart,\n"
        "striped-cross; tuning: ladybug, chessboard, zebra-triangle, target-star, pumpkin-heart,\n"
        "dotted-cross; photographs: chelsea, coffee.",
        (("mnemo toy samples bullseye --out ./bullseye", "six 64x64 PNGs of the bullseye"),),
    ),
    ("bench", "speed"): (
        "Seconds per iteration of each training phase and the cost ratios DC-phase / train.",
        (("mnemo bench speed --backbone toy", "on the shipped toy, CPU"),),
    ),
    ("bench", "gpu"): (
        "Seconds per iteration, DC-phase / train ratios and peak GPU memory of one task of each\n"
        "consolidated method on SD v1.4's architecture with random weights (bench/README.md).",
        (
            ("mnemo bench gpu --device cuda", "on a GPU machine, under 8 minutes"),
            ("mnemo bench gpu --cpu-smoke --out /tmp/gpu.json", "the tiny config on CPU, seconds"),
        ),
    ),
    ("bench", "cl"): (
        "The paper's continual-learning table (A_MMD, BwT_MMD, ...) with recognition and paired\n"
        "bootstrap intervals against sequential LoRA; runs are cached in --out (bench/README.md).",
        (
            ("mnemo bench cl --methods lora_sequential,dsc_ewc_dc --seeds 0", "two methods, one seed"),
            ("bench/toy_results.sh cl", "the committed table"),
        ),
    ),
    ("bench", "sanity"): (
        "The paper's sanity checks: Fisher with and without DC scores, DC accuracy.",
        (("mnemo bench sanity --backbone toy", "on the shipped toy"),),
    ),
    ("bench", "calibrate"): (
        "Find the DC temperature τ of a backbone preset (teacher top-1 ≈ 0.8) and record it.",
        (
            (
                "mnemo bench calibrate --backbone toy --preset toy --concept-names ladybug,chessboard",
                "the toy's τ",
            ),
        ),
    ),
    ("bench", "sweep"): (
        "Tune λ and τ of the consolidations on tuning concepts, the same budget for every method.",
        (("bench/toy_results.sh sweep", "the committed sweep"),),
    ),
    ("bench", "personalization"): (
        "Learn each bundled concept alone and report how often the judge recognises it.",
        (("mnemo bench personalization --concepts all --n-eval 24", "every bundled concept"),),
    ),
    ("bench", "api"): (
        "Overhead of /v1/generate over a direct engine call, and job-status polling load.",
        (("mnemo bench api --requests 20", "twenty requests against an in-process service"),),
    ),
    ("export",): (
        "Write a user's adapter version as a zip (docs/export.md): a diffusers LoRA, a kohya LoRA,\n"
        "one textual-inversion file per token and a JSON card, as GET /v1/adapters/{version}/export.",
        (
            ("mnemo export 1 --user alice --data-dir ./mnemo-data", "alice's first adapter version"),
            ("mnemo export <version id> --user alice -o alice.zip", "a version by its id"),
        ),
    ),
    ("bench", "dashboard"): (
        "Server time of the admin dashboard's pages on a seeded database (SQLite and PostgreSQL).",
        (("mnemo bench dashboard --out bench/results/dashboard", "the committed figures"),),
    ),
    ("bench", "chaos"): (
        "A bounded soak on loopback (its own PostgreSQL and Redis, tiny backbone): users submit\n"
        "concepts and generations while workers, the API and the servers are killed, crash points\n"
        "fire and Redis is wiped; then one line: accepted, exactly once, lost, run twice, lineage\n"
        "violations, raw bytes left, orphans left (docs/faults.md).",
        (
            ("mnemo bench chaos --faults 220 --out bench/results/chaos", "the committed soak"),
            ("mnemo bench chaos --minutes 1 --faults 8", "a one-minute check"),
        ),
    ),
}


def document(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every sub-command under ``parser`` its page's description and examples."""
    for name, sub in subcommands(parser).items():
        here = (*path, name)
        page = PAGES.get(here)
        if page is not None:
            description, examples = page
            width = max(len(example) for example, _ in examples) + 2
            lines = [f"  {example:<{width}}{what}" for example, what in examples]
            sub.description = description
            sub.epilog = "examples:\n" + "\n".join(lines)
        document(sub, here)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers directly under ``parser``, by name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found
