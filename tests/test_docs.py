"""The documentation's shape: README is the front page (at most 300 lines), the rest lives in
docs/, one page per subject, each with a table of contents; every relative link and anchor in
them leads somewhere that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.paths import ROOT

DOCS = ROOT / "docs"
PAGES = [
    "configuration.md",
    "cli.md",
    "http-api.md",
    "console.md",
    "supabase.md",
    "deployment.md",
    "security.md",
    "operations.md",
    "architecture.md",
    "encryption.md",
    "development.md",
    "storage.md",
    "verification.md",
]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.*)$", text, re.M)}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_the_readme_is_a_front_page_of_at_most_300_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES)
def test_each_docs_page_exists_with_a_table_of_contents(page: str) -> None:
    text = (DOCS / page).read_text()
    assert text.startswith("# "), page
    contents = text.split("**Contents**", 1)
    assert len(contents) == 2, f"{page} has no **Contents**"
    toc = re.findall(r"^\s*- \[[^\]]+\]\(#([^)]+)\)", contents[1].split("\n## ", 1)[0], re.M)
    own = anchors(DOCS / page)
    assert toc and set(toc) <= own, (page, set(toc) - own)
    sections = {anchor(h) for h in re.findall(r"^## (.*)$", _FENCE.sub("", text), re.M)}
    assert sections <= set(toc), (page, "sections missing from the contents", sections - set(toc))


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_FENCE.sub("", doc.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, fragment = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        missing_anchor = bool(fragment) and dest.suffix == ".md" and dest.exists() and fragment not in anchors(dest)
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert broken == [], f"{doc.name}: {broken}"
