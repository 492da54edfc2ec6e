"""``mnemo bench <name>``: benchmarks live in ``bench/<name>.py``.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``;
they are imported only when their sub-command runs.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "speed": ("bench.speed", "seconds per iteration of each phase and the cost ratios"),
    "gpu": ("bench.gpu", "one task per consolidated method on SD v1.4-size random weights: s/it, memory"),
    "cl": ("bench.cl", "continual-learning table of the paper (A_MMD, BwT_MMD, ...) per method"),
    "sanity": ("bench.sanity", "paper sanity checks: Fisher with/without DC, DC accuracy"),
    "calibrate": ("bench.calibrate", "DC temperature τ of a backbone preset (teacher top-1 ≈ 0.8), recorded"),
    "sweep": ("bench.sweep", "tune λ and τ on tuning concepts, the same budget for every method"),
    "personalization": ("bench.personalization", "one concept on the toy backbone: MMD before/after"),
    "api": ("bench.api", "/v1/generate overhead and job-status polling load"),
    "dashboard": ("bench.dashboard", "admin pages at 1,000 users / 1,000 tasks: p50/p95 server time"),
    "chaos": ("bench.chaos", "bounded soak killing workers, the API, Redis and PostgreSQL: one summary line"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark (see bench/)")
    benches = parser.add_subparsers(dest="bench", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = benches.add_parser(name, help=help_text)
        sub.set_defaults(handler=_runner(module_name), bench_module=module_name)
        sub.add_argument("--json", action="store_true", help="print the summary as JSON")
        _add_module_arguments(sub, module_name)


def _add_module_arguments(parser: argparse.ArgumentParser, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return
    module.add_arguments(parser)


def _runner(module_name: str):
    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module_name).run(args)

    return run
