"""Every relative link of README.md and docs/*.md resolves: the file exists in the repository, and
an `#anchor` (in the same file or another one) names a heading of that file, slugged as GitHub does."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, without punctuation except '-' and
    '_', spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    found = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def broken(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        where = f"{path.relative_to(REPO)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / unquote(file_part)).resolve() if file_part else path
        if REPO not in linked.parents and linked != REPO:
            problems.append(f"{where}: outside the repository")
            continue
        if not linked.exists():
            problems.append(f"{where}: no such file")
            continue
        if anchor:
            if linked.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
            elif unquote(anchor) not in anchors(linked):
                problems.append(f"{where}: no heading with this anchor in {linked.relative_to(REPO)}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken(path) == []


def test_the_docs_link_to_each_other() -> None:
    """The check sees the links it is meant to check: the README's links into docs/ and anchors."""
    targets = [target for _, target in links(REPO / "README.md")]
    assert any(t.startswith("docs/") and "#" in t for t in targets)
    assert any(t.startswith("docs/") and t.endswith(".md") for t in targets)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "Long drains: Auto Scaling lifecycle hooks and AWS Health scheduled changes",
            "long-drains-auto-scaling-lifecycle-hooks-and-aws-health-scheduled-changes",
        ),
        (
            "Durable functions (the long drains): invoked as `$LATEST`, written out",
            "durable-functions-the-long-drains-invoked-as-latest-written-out",
        ),
        (
            "What `make test` proves locally (`make deploy-tests`, about 30 s)",
            "what-make-test-proves-locally-make-deploy-tests-about-30-s",
        ),
        (
            "Compared with aws-node-termination-handler and Karpenter",
            "compared-with-aws-node-termination-handler-and-karpenter",
        ),
        ("snake_case and the [docs](docs/x.md)", "snake_case-and-the-docs"),
    ],
)
def test_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A part\n", encoding="utf-8")
    page.write_text(
        "# Page\n\n## Same\n\n[ok](#same) [ok](other.md#a-part) [bad](#nowhere) [bad](other.md#gone)\n"
        "[bad](missing.md) `[code](ignored.md)`\n\n```\n[fenced](ignored.md)\n```\n[web](https://example.com)\n",
        encoding="utf-8",
    )
    assert [p.split(": ", 1)[1] for p in broken(page)] == [
        "#nowhere: no heading with this anchor in page.md",
        "other.md#gone: no heading with this anchor in other.md",
        "missing.md: no such file",
    ]
