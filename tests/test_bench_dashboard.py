"""``mnemo bench dashboard`` at a small scale on SQLite and PostgreSQL: the pages it times are the
real ones with the right rows, every list is walked to its end, and the report has its fields.

No timing is asserted here: the 200 ms target is the bench's verdict, not a test's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from bench import dashboard
from core.cli.main import build_parser

USERS, PER_USER, HEAVY = 60, 1, 120  # two users pages (50 per page) and two history pages (100)
PAGES = {
    "users page": ("page", min(50, USERS + 2)),
    "users page, last": ("page", USERS + 2 - 50),
    "history page": ("page", 100),
    "history page, oldest": ("page", HEAVY - 100),
    "GET /v1/admin/users": ("api", min(100, USERS + 2)),
    "GET /v1/admin/users/{id}/tasks": ("api", 50),
}


def _scratch_databases(admin_url: str) -> list[str]:
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as connection:
            return list(
                connection.scalars(
                    sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'mnemo_bench_dashboard_%'")
                )
            )
    finally:
        engine.dispose()


def test_the_bench_times_real_pages_on_sqlite_and_postgres(postgres_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results"
    args = build_parser().parse_args(
        ["bench", "dashboard", "--json", "--backends", "sqlite,postgres",
         "--postgres-url", postgres_server.admin_url, "--broker-url", "memory://",
         "--users", str(USERS), "--tasks-per-user", str(PER_USER), "--heavy-tasks", str(HEAVY),
         "--repeats", "2", "--warmups", "1", "--out", str(out), "--note", "a test run"]
    )  # fmt: skip
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((out / "dashboard.json").read_text()) == printed
    readme = (out / "README.md").read_text()
    assert printed["command"] in readme and "a test run" in readme and printed["note"] == "a test run"
    assert printed["target_ms"] == 200.0 and isinstance(printed["pass"], bool)
    assert [b["backend"] for b in printed["backends"]] == ["sqlite", "postgres"]
    for backend in printed["backends"]:
        assert backend["users"] == USERS + 2 and backend["heavy_user_tasks"] == HEAVY
        assert backend["rows"]["jobs"] >= USERS * PER_USER + HEAVY
        assert {p["name"]: (p["kind"], p["rows"]) for p in backend["pages"]} == PAGES
        for page in backend["pages"]:
            assert 0 < page["p50_ms"] <= page["p95_ms"] <= page["max_ms"]
            assert page["bytes"] > 0 and page["sql_statements"] > 0
            assert page["pass"] == (page["p95_ms"] <= page["target_ms"])
    assert _scratch_databases(postgres_server.admin_url) == []  # the scratch database was dropped


def test_the_heavy_users_page_shows_its_lineage_and_a_window_of_previews() -> None:
    seeded = SimpleNamespace(heavy_versions=300, previews=8)
    assert dashboard.preview_grid(seeded) == (24, 31)  # tasks 277..300; concepts 270..300
    assert dashboard.preview_grid(SimpleNamespace(heavy_versions=5, previews=8)) == (5, 5)
    assert dashboard.preview_grid(SimpleNamespace(heavy_versions=300, previews=0)) == (0, 0)


def test_an_error_page_or_a_short_page_stops_the_bench() -> None:
    probe = dashboard.Probe("users page", "page", "/admin", 2, dashboard._html_rows(dashboard.USER_ROW), "")
    two_rows = SimpleNamespace(status_code=200, text='<tr data-user="a"><tr data-user="b">')
    dashboard._verified(probe, two_rows)
    with pytest.raises(SystemExit, match="answered 500"):
        dashboard._verified(probe, SimpleNamespace(status_code=500, text="oops"))
    with pytest.raises(SystemExit, match="shows 1 rows, expected 2"):
        dashboard._verified(probe, SimpleNamespace(status_code=200, text='<tr data-user="a">'))


def test_a_long_lineage_shows_its_last_versions_numbered_as_in_the_whole_chain(api) -> None:  # type: ignore[no-untyped-def]
    from api.dashboard.pages import LINEAGE_VERSIONS
    from core.db.admin import lineage_tail
    from core.db.jobs import user_lineage
    from tests.test_admin_pages import login

    _, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    for index in range(LINEAGE_VERSIONS + 3):
        api.trained_concept(user_id=alice_id, name=f"c{index}")
    with api.session_factory() as session:
        chain = user_lineage(session, user_id=alice_id)
        tail = lineage_tail(session, user_id=alice_id, limit=LINEAGE_VERSIONS)
        assert [v.id for v, _ in tail.versions] == [v.id for v in chain[-LINEAGE_VERSIONS:]]
        assert tail.head == chain[-1].id and tail.length == len(chain) and tail.first_position == 4
    login(api, admin["Authorization"].removeprefix("Bearer "))
    page = api.client.get(f"/admin/users/{alice_id}").text
    assert len(dashboard.LINEAGE_NODE.findall(page)) == LINEAGE_VERSIONS
    assert ">v4 · &lt;c3&gt;<" in page and ">v3 ·" not in page and "v1–v3" in page
    assert (
        page.count('class="edge"') == LINEAGE_VERSIONS - 1
    )  # the first one shown has its parent off the graph
