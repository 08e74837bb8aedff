"""Every relative link and #anchor in README.md and docs/*.md resolves: the file or folder
exists inside the repository, and an anchor names a heading of its page by GitHub's slug
rule (or an explicit `<a id>`). Links with a scheme (https:, mailto:) are not followed."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked: links there are examples."""
    return INLINE_CODE.sub(" ", FENCE.sub(" ", text))


def heading_text(markdown: str) -> str:
    """What a heading renders as: links as their text, no code ticks or emphasis marks."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "").replace("*", "")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped (letters,
    digits, marks, `_` and `-` stay), each space a hyphen."""
    kept = "".join(c for c in heading_text(heading).strip().lower()
                   if c.isalnum() or c in "_- " or unicodedata.category(c).startswith("M"))
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a page: its headings' slugs (repeats get -1, -2, ... as on GitHub)
    and explicit `<a id>` / `<a name>` targets."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub(" ", text)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found | set(HTML_ID.findall(text))


def links(text: str) -> list[str]:
    """The targets of a page's inline links and images, outside code."""
    return LINK.findall(without_code(text))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What does not resolve among one page's relative links, each with the reason."""
    text = page.read_text()
    problems = []
    for target in links(text):
        if SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}: ({target})"
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.is_relative_to(root.resolve()):
            problems.append(f"{where} leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{where} names no file")
            continue
        if not anchor:
            continue
        if dest.suffix != ".md":
            problems.append(f"{where} has an anchor on a page that is not Markdown")
        elif anchor not in anchors(dest.read_text()):
            problems.append(f"{where} names no heading of {dest.relative_to(root.resolve())}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert links(page.read_text()), "a page with no link at all: is the parser still right?"
    assert broken_links(page) == []


def test_every_page_of_docs_is_reachable_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {t.partition("#")[0] for t in links(readme)}
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked


def test_the_check_finds_a_missing_file_a_wrong_anchor_and_a_way_out(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\n## Faults, measured\n\n## Observable in O(1) per queue\n\n## Steps\n\n"
        "## Steps\n\nBack to [the top](../README.md#the-title).\n")
    (tmp_path / "README.md").write_text(
        "# The title\n\n"
        "[fine](docs/guide.md#faults-measured) [fine](docs/guide.md#observable-in-o1-per-queue)"
        " [fine](docs/guide.md#steps-1) [fine](#the-title) [web](https://example.org/x#y)\n"
        "[no file](docs/missing.md) [no anchor](docs/guide.md#faults-measured-2)"
        " [here](#nowhere) [out](../../etc/passwd)\n"
        "`[in code](docs/missing.md)`\n\n```\n[in a fence](docs/missing.md)\n```\n")
    problems = broken_links(tmp_path / "README.md", tmp_path)
    assert problems == [
        "README.md: (docs/missing.md) names no file",
        "README.md: (docs/guide.md#faults-measured-2) names no heading of docs/guide.md",
        "README.md: (#nowhere) names no heading of README.md",
        "README.md: (../../etc/passwd) leaves the repository",
    ]
    assert broken_links(tmp_path / "docs" / "guide.md", tmp_path) == []


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Faults, measured", "faults-measured"),
    ("Observable in O(1) per queue", "observable-in-o1-per-queue"),
    ("One operator, 10,000 pools", "one-operator-10000-pools"),
    ("The chart's monitoring objects", "the-charts-monitoring-objects"),
    ("`make demo` and *make test*", "make-demo-and-make-test"),
    ("Redis: one server, Sentinel or Cluster", "redis-one-server-sentinel-or-cluster"),
    ("A [link](x.md) in it", "a-link-in-it"),
    ("queues tf:{name}:… → Redis", "queues-tfname--redis"),
])
def test_slugs_follow_githubs_rule(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
