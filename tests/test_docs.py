"""The README is a guide that opens with its three commands and defines its terms before using
them; docs/ holds the reference; every link resolves inside the repository; dated figures
live in benchmarks/RESULTS.md, which opens with a table of current figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
GUIDES = [README, *DOCS]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub writes it: lower case, punctuation dropped, spaces as
    hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a Markdown file."""
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line[:1] == "#"}


def local_links(path: Path) -> list[tuple[Path, str]]:
    """(file, anchor) of every link of `path` that is not a web address."""
    links = []
    for target in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        links.append(((path.parent / file).resolve() if file else path, anchor))
    return links


def test_the_readme_opens_with_its_three_commands() -> None:
    first_block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make smoke", "make pilot", "make test"]


def test_the_readme_is_a_guide_not_a_lab_log() -> None:
    """About 300 lines, with no date and no commit: those belong in benchmarks/RESULTS.md."""
    text = README.read_text()
    assert len(text.splitlines()) <= 350
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", text) == []
    assert re.findall(r"`[0-9a-f]{7,40}`", text) == []


@pytest.mark.parametrize("path", GUIDES + [RESULTS], ids=lambda path: path.name)
def test_every_link_resolves_inside_the_repository(path: Path) -> None:
    broken = [
        f"{file}#{anchor}"
        for file, anchor in local_links(path)
        if not file.is_relative_to(ROOT)
        or not file.exists()
        or (anchor and file.suffix == ".md" and anchor not in anchors(file))
    ]
    assert broken == []


def test_the_readme_links_every_page_of_the_docs_and_every_screenshot() -> None:
    linked = {file for file, _ in local_links(README)}
    assert [page.name for page in DOCS if page.resolve() not in linked] == []
    shots = sorted((ROOT / "benchmarks" / "screenshots").glob("*.png"))
    assert shots, "the README's screenshots are missing"
    assert [shot.name for shot in shots if shot.resolve() not in linked] == []


@pytest.mark.parametrize("path", GUIDES, ids=lambda path: path.name)
def test_the_guides_cite_no_file_outside_the_repository(path: Path) -> None:
    """A Markdown file named in backticks is one of the repository's."""
    named = re.findall(r"`([^`\s]+\.md)`", path.read_text())
    missing = [
        name for name in named if not (ROOT / name).exists() and not (path.parent / name).exists()
    ]
    assert missing == []


def test_the_readme_defines_its_terms_before_using_them() -> None:
    """Each term first appears in the README's Terms section, and docs/definitions.md has it."""
    text = README.read_text()
    start = text.index("\n## Terms\n")
    section = text[start : text.index("\n## ", start + 1)]
    used = ["L_local", "ELP_net", "route_net", "CPT", "Q1_highU_highL", "drift", "specificity"]
    assert [term for term in used if text.index(term) < start or term not in section] == []
    definitions = (ROOT / "docs" / "definitions.md").read_text()
    assert [term for term in used if term not in definitions] == []


def test_results_open_with_a_dated_table_of_current_figures() -> None:
    text = RESULTS.read_text()
    first_section = text.split("\n## ", 2)[1]
    assert first_section.startswith("Current figures\n")
    rows = [line for line in first_section.splitlines() if line.startswith("| ")][1:]
    assert len(rows) >= 5
    undated = [row for row in rows if not re.search(r"\| 20\d\d-\d\d-\d\d\b", row)]
    assert undated == []
