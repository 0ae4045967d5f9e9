"""Every relative link in the tracked Markdown files points at a file that exists, and at a heading that exists.

For each tracked ``*.md`` file (``git ls-files``; new files that git does not ignore too, so a page is checked
before its first commit), every inline link ``[text](target)`` outside fenced code blocks and inline code is
checked, unless the target is a URL (``http:``, ``https:``, ``mailto:``, …):

* ``path`` or ``path#anchor``: the path, relative to the linking file, must exist in the working tree;
* ``path.md#anchor`` or ``#anchor``: the Markdown file must have a heading whose GitHub anchor is ``anchor``
  (lowercase; punctuation other than ``-`` and ``_`` removed; each space a ``-``; a repeated heading gets
  ``-1``, ``-2``, … as on GitHub). Explicit ``<a name="…">``/``id="…"`` anchors count too.
"""

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
#: ``[text](target)`` or ``[text](target "title")``, text without nested brackets; images ``![..](..)`` too.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*(?:name|id)\s*=\s*\"([^\"]+)\"", re.IGNORECASE)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: markup stripped, lowercase, punctuation but '-' and '_' dropped,
    spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text)                               # inline HTML tags
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)                              # \w keeps letters, digits, '_' (Unicode too)
    return text.replace(" ", "-")


def _prose_lines(text: str):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker):].strip():
                fence = None
            continue
        if fence is None:
            yield n, line


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file offers: its headings' (with GitHub's -1, -2 suffixes) and explicit ones."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(text))
    for _, line in _prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = github_anchor(m.group(2))
        k = seen.get(base, 0)
        out.add(base if k == 0 else f"{base}-{k}")
        seen[base] = k + 1
    return frozenset(out)


def _tracked_markdown() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("no git checkout here (git or .git missing): cannot list the tracked files")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.md"],
                         cwd=REPO, capture_output=True, check=True).stdout
    return [rel for rel in out.decode("utf-8", errors="surrogateescape").split("\0")
            if rel and (REPO / rel).is_file()]


def broken_links(rel: str) -> list[str]:
    """'file:line: [target] why' for each broken relative link of one tracked Markdown file."""
    src = REPO / rel
    bad = []
    for n, line in _prose_lines(src.read_text(encoding="utf-8")):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            target = m.group(1)
            if not target or SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            dest = (src.parent / path).resolve() if path else src
            if not dest.exists():
                shown = dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest
                bad.append(f"{rel}:{n}: ({target}) no such file {shown}")
            elif anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
                bad.append(f"{rel}:{n}: ({target}) {dest.relative_to(REPO)} has no heading with anchor #{anchor}")
    return bad


def test_github_anchor_rules():
    assert github_anchor("Model size (2026-12-07)") == "model-size-2026-12-07"
    assert github_anchor("The fast path (`deepasa.train.fastpath`, `benchmarks/train_speed.py`)") \
        == "the-fast-path-deepasatrainfastpath-benchmarkstrain_speedpy"
    assert github_anchor("Trajectory-conditioned extractor (a named deviation: `deepasa.model.extractor`)") \
        == "trajectory-conditioned-extractor-a-named-deviation-deepasamodelextractor"
    assert github_anchor("Run 1 → run 2") == "run-1--run-2"
    assert github_anchor("2.1 Paper description") == "21-paper-description"


def test_every_relative_link_in_the_markdown_files_resolves():
    bad = [b for rel in _tracked_markdown() for b in broken_links(rel)]
    assert not bad, f"{len(bad)} broken relative link(s) in the Markdown files:\n" + "\n".join(bad)
