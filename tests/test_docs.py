"""The docs hold together: every relative link in the Markdown pages leads to a file that exists,
and README.md stays a newcomer's page (at most ~250 lines; the rest lives in docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        REPO / "README.md",
        REPO / "CHANGELOG.md",
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "deploy").rglob("README.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file(page: Path):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:|^#", target):  # a URL or an anchor in the page
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert broken == [], f"{page.relative_to(REPO)} links to files that do not exist"


def test_the_readme_is_a_newcomers_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    for needed in ("make demo", "make test", "docs/cli.md", "docs/jobs.md", "docs/data.md"):
        assert any(needed in line for line in lines), needed


def test_every_engineering_note_is_dated_and_listed():
    notes = REPO / "docs" / "notes"
    index = (notes / "README.md").read_text()
    for note in sorted(notes.glob("*.md")):
        if note.name == "README.md":
            continue
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-[a-z0-9.-]+\.md", note.name), note.name
        assert f"]({note.name})" in index, f"{note.name} is not listed in docs/notes/README.md"
