"""The documentation stands alone: every relative link of every tracked markdown file resolves to a
file inside the repository (anchors into markdown files to one of its headings), no link leaves the
repository, and no tracked text points outside it or to the tracker's issue numbers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+[\"'(][^)]*)?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def tracked(pattern: str) -> list[Path]:
    """Tracked files matching the git pathspec ``pattern`` (the repository as a clone has it)."""
    out = subprocess.run(["git", "ls-files", "-z", "--", pattern], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def links(text: str) -> list[tuple[int, str]]:
    """``(line number, target)`` of every inline link, image and reference definition outside
    code (fenced blocks and inline code spans)."""
    found, in_fence = [], False
    for no, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = _INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in _INLINE_LINK.finditer(line)]
        ref = _REF_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        found += [(no, t[1:-1] if t.startswith("<") else t) for t in targets]
    return found


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a markdown file's headings (lower case, punctuation dropped,
    spaces to hyphens, ``-1``, ``-2`` ... on repeats)."""
    anchors, seen, in_fence = set(), {}, False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def link_problems(md: Path, root: Path) -> list[str]:
    """Why each relative link of ``md`` fails (empty when all resolve inside ``root``)."""
    problems = []
    rel = md.relative_to(root)
    for no, target in links(md.read_text(encoding="utf-8")):
        if _SCHEME.match(target):  # http:, https:, mailto: ... : not a file of the repository
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{rel}:{no}: {target}"
        if path_part.startswith("/"):
            problems.append(f"{where}: absolute path")
            continue
        dest = (md.parent / unquote(path_part)).resolve() if path_part else md.resolve()
        if not dest.is_relative_to(root.resolve()):
            problems.append(f"{where}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and \
                unquote(anchor) not in heading_anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def test_every_relative_link_of_every_tracked_markdown_file_resolves():
    mds = tracked("*.md")
    assert ROOT / "README.md" in mds and ROOT / "docs" / "SPEC.md" in mds
    problems = [p for md in mds for p in link_problems(md, ROOT)]
    assert not problems, "\n".join(problems)


def test_the_link_check_catches_broken_links(tmp_path):
    """The checker itself: a missing file, an escape through ``..``, an absolute path and a missing
    anchor are reported; links in code, URLs and good links are not."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "SPEC.md").write_text("# Spec\n\n## 7. Randomness (version 2)\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    page = root / "docs" / "page.md"
    page.write_text(
        "[ok](SPEC.md) [ok anchor](SPEC.md#7-randomness-version-2) [url](https://example.org/x)\n"
        "[missing](NOPE.md)\n"
        "[escape](../../outside.md)\n"
        "![abs](/etc/hosts)\n"
        "[bad anchor](SPEC.md#randomness)\n"
        "`[in code](gone.md)`\n"
        "```\n[in a fence](gone.md)\n```\n"
        "[ref]: <also missing.md>\n")
    problems = link_problems(page, root)
    assert [p.split(": ", 1)[0] for p in problems] == [f"docs/page.md:{n}" for n in (2, 3, 4, 5, 10)]
    assert "no such file" in problems[0] and "leaves the repository" in problems[1]
    assert "absolute path" in problems[2] and "no heading" in problems[3]


_ISSUE_NUMBER = re.compile(r"\bissue[- ]?[0-9]+\b", re.IGNORECASE)
_OUTSIDE = re.compile(r"\.\./shared|/work/(?:main|wt|shared)\b|this[ ]session", re.IGNORECASE)


@pytest.mark.parametrize("pattern", ["*.md", "*.py", "*.h", "*.cpp", "*.sh", "*.txt", "*.toml"])
def test_no_issue_numbers_or_paths_outside_the_repository(pattern):
    hits = []
    for path in tracked(pattern):
        if path == Path(__file__).resolve():
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _ISSUE_NUMBER.search(line) or _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)
