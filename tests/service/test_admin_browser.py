"""The admin dashboard and /docs in a real browser: Debian's chromium driven by Playwright.

The app runs in uvicorn on a free port over a real SQLite database; the rows a worker would
write are seeded (trained concepts, preview images) and a running job's progress is advanced
through ``core.db.jobs.heartbeat``, the function the worker's heartbeat calls. Chromium runs
headless with no network besides this server (docs/dashboard.md). Never ``playwright install``:
``.ci/run`` installs the Debian ``chromium`` package.
Set ``MNEMO_SCREENSHOTS=<folder>`` to keep the screenshots (docs/ has the committed ones).
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.db.jobs import claim_job, heartbeat
from core.db.previews import PreviewImage, PreviewItem, store_previews
from core.db.users import create_user
from core.db.workers import WorkerInfo, touch_worker
from core.storage import LocalStore as ArtifactStore
from tests.admin_support import queue_train_job
from tests.conftest import ApiHarness, make_settings, seed_trained_concept

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 150_000
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
pytestmark = [pytest.mark.slow, SQLITE_ONLY]


@dataclass
class Dashboard:
    base_url: str
    harness: ApiHarness
    admin_key: str
    user_key: str
    alice_id: str
    running_job: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _seed(harness: ApiHarness) -> tuple[str, str, str, str]:
    """Users, two trained concepts with previews, a running job; returns keys and ids."""
    factory, settings = harness.session_factory, harness.settings
    with factory() as session:
        admin_key = create_user(session, name="root", role="admin", pepper=settings.pepper).key
        user_key = create_user(session, name="bob", pepper=settings.pepper).key
        alice = create_user(session, name="alice", pepper=settings.pepper).user.id
        session.commit()
    store = ArtifactStore(settings.data_dir)
    concepts = [seed_trained_concept(harness, user_id=alice, name=name) for name in ("mug", "dog")]
    with factory() as session:
        from core.db.models import Concept, Job

        ids = [(session.get(Concept, c["concept"]), c["job"]) for c in concepts]
        session.get(Job, concepts[1]["job"]).loss_curves = {
            "train": [[s, 1.0 / s] for s in range(1, 41)],
            "fisher": [[s, 0.2] for s in range(1, 11)],
        }
        session.commit()
    for after, (job_id) in ((1, concepts[0]["job"]), (2, concepts[1]["job"])):
        items = []
        for concept, _ in ids[:after]:
            images = [
                store.write_bytes(store.new_image_path(), _png((200, 40 * after, 30))) for _ in range(2)
            ]
            items.append(
                PreviewItem(
                    concept_id=concept.id,
                    token=concept.token,
                    after_task_index=after,
                    seed=0,
                    images=[PreviewImage(path=i.path, sha256=i.sha256, width=32, height=32) for i in images],
                    retention=100.0 if concept.task_index == after else 87.5,
                    features="toy-classifier",
                )
            )
        store_previews(factory, job_id=job_id, user_id=alice, items=items)
    running = queue_train_job(factory, user_id=alice, name="cat")
    claim_job(factory, job_id=running, worker_id="gpu-host:1234", lease_seconds=600)
    info = WorkerInfo(
        worker_id="gpu-host:1234", role="pool", device="cuda:0", backbone="sd-1.5", preset="paper"
    )
    touch_worker(factory, info=info, current_job_id=running)
    return admin_key, user_key, alice, running


@pytest.fixture
def dashboard(database_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    import uvicorn

    from api.app import create_app

    settings = make_settings(data_dir=tmp_path / "data", database_url=database_url, events_poll_seconds=0.2)
    app = create_app(settings, dispatcher=lambda: None)
    harness = ApiHarness(
        client=None, settings=settings, session_factory=app.state.services.session_factory, dispatches=[]
    )
    admin_key, user_key, alice, running = _seed(harness)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", harness, admin_key, user_key, alice, running)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser: Any, dashboard: Dashboard) -> tuple[Any, list[str]]:
    """A page whose requests may only reach the test server (the others are aborted and listed)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)  # generous: CI shares two cores with other jobs
    page = context.new_page()
    outside: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(dashboard.base_url) or url.startswith("data:"):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    return page, outside


def _shoot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("MNEMO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def _login(page: Any, dashboard: Dashboard, key: str, *, admin: bool = True) -> None:
    """Log in through the form; an admin lands on the users page."""
    page.goto(f"{dashboard.base_url}/admin")
    page.wait_for_url("**/admin/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    if admin:
        page.wait_for_url(f"{dashboard.base_url}/admin")


def test_an_admin_logs_in_and_reads_a_users_history(
    browser: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    page, outside = _page(browser, dashboard)
    _login(page, dashboard, dashboard.admin_key)
    assert page.locator("tr[data-user]").count() == 3
    _shoot(page, "dashboard-users.png", tmp_path)

    page.locator("tr[data-user=alice] a").click()
    page.wait_for_url(f"**/admin/users/{dashboard.alice_id}")
    assert page.locator("li.task").count() == 3  # two trained, one running
    deleted = page.locator("li.task dd.deleted").all_inner_texts()
    assert sum(1 for text in deleted if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)) == 2
    assert (
        page.locator("svg.lineage g.node").count() == 2 and page.locator("svg.lineage line.edge").count() == 1
    )
    strip = page.locator("tr.strip[data-concept=mug] img")
    assert strip.count() == 4  # 2 images after task 1 and after task 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('tr.strip img')].every(i => i.complete && i.naturalWidth === 32)"
    )
    assert page.locator("tr.strip[data-concept=mug] td.retention").inner_text() == "87.5"
    _shoot(page, "dashboard-user.png", tmp_path)

    page.locator("li.task a", has_text="<dog>").click()
    page.wait_for_selector("figure.curve[data-phase=train] canvas")
    assert page.locator("figure.curve canvas").count() == 2  # train and fisher
    _shoot(page, "dashboard-task.png", tmp_path)
    assert outside == []


def test_the_live_page_moves_with_the_workers_progress(
    browser: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    page, outside = _page(browser, dashboard)
    _login(page, dashboard, dashboard.admin_key)
    stop = threading.Event()

    def work() -> None:  # what the worker's heartbeat writes, once per "step"
        step = 0
        while not stop.wait(0.25):
            step = min(step + 5, 200)
            progress = {"phase": "train", "step": step, "total": 200, "loss": 1.0 / step}
            heartbeat(
                dashboard.harness.session_factory,
                job_id=dashboard.running_job,
                fencing_token=1,
                lease_seconds=600,
                progress=progress,
            )

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        page.goto(f"{dashboard.base_url}/admin/live")
        row = f"tr[data-job='{dashboard.running_job}'] progress"
        page.wait_for_function(f'() => document.querySelector("{row}")?.value > 0')
        first = page.eval_on_selector(row, "p => p.value")
        page.wait_for_function(f'() => document.querySelector("{row}").value > {first}')
        assert page.locator("#live-status").inner_text().startswith("live")
        assert page.locator(f"tr[data-job='{dashboard.running_job}'] td.phase-name").inner_text() == "train"
        _shoot(page, "dashboard-live.png", tmp_path)
    finally:
        stop.set()
        worker.join(timeout=5)
    assert outside == []


def test_logged_out_non_admin_and_forged_posts_are_refused(browser: Any, dashboard: Dashboard) -> None:
    page, _ = _page(browser, dashboard)
    page.goto(f"{dashboard.base_url}/admin/users/{dashboard.alice_id}")
    assert page.url == f"{dashboard.base_url}/admin/login"
    assert page.locator("h1").inner_text() == "Log in"

    _login(page, dashboard, dashboard.user_key, admin=False)
    page.wait_for_load_state()
    assert "needs an admin account" in page.content()
    status = page.evaluate("() => fetch('/admin/users/' + 'x', {method: 'GET'}).then(r => r.status)")
    assert status == 303 or status == 200  # redirected to the login page: no session was made
    assert "mnemo_admin" not in {c["name"] for c in page.context.cookies()}

    _login(page, dashboard, dashboard.admin_key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "mnemo_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    forged = page.evaluate(
        """() => fetch('/admin/users', {method: 'POST', body: new URLSearchParams({name: 'mallory'})})
                 .then(r => r.status)"""
    )
    assert forged == 403
    assert page.evaluate("() => document.cookie") == ""  # the session cookie is not readable by scripts
    page.click("form.logout button")
    page.wait_for_url("**/admin/login")
    page.goto(f"{dashboard.base_url}/admin")
    assert page.url.endswith("/admin/login")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_render_the_operation_list_with_no_network(
    browser: Any, dashboard: Dashboard, path: str
) -> None:
    page, outside = _page(browser, dashboard)
    page.goto(f"{dashboard.base_url}{path}")
    if path == "/docs":
        page.wait_for_selector(".opblock-summary-path")
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/concepts" in operations and "/v1/admin/users/{user_id}/tasks" in operations
        assert page.locator("button.authorize").count() == 1
    else:
        page.wait_for_selector("[data-section-id^='tag/']")
        assert page.get_by_text("/v1/admin/users/{user_id}/tasks").count() >= 1
    assert outside == []
