"""Code cites documents in the repository only, and each cited section of docs/architecture.md exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("api", "core", "worker", "tests", "migrations")
CITATION = re.compile(r'docs/architecture\.md`?,\s*"([^"]+)"')
OUTSIDE = re.compile(r"\bDESIGN\.md\b|\bresearch/\w+\.md\b")


def _python_files() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def test_cited_sections_of_the_architecture_page_exist() -> None:
    headings = set(re.findall(r"^## (.+)$", (ROOT / "docs" / "architecture.md").read_text(), re.MULTILINE))
    cited = {
        (path.relative_to(ROOT).as_posix(), section)
        for path in _python_files()
        for section in (" ".join(found.split()) for found in CITATION.findall(path.read_text()))
    }
    assert cited, "no citations found"
    assert [(path, section) for path, section in sorted(cited) if section not in headings] == []


def test_no_code_cites_documents_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = [
        p.relative_to(ROOT).as_posix() for p in _python_files() if p != this and OUTSIDE.search(p.read_text())
    ]
    assert offenders == []
