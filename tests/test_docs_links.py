"""The documents link only to what the repository holds: every image and every relative link in the
README and docs/ names a file that exists (a gallery of screenshots with a missing picture, or a link to
a page that moved, is what a reader meets first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), without the web's links and in-page anchors
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def targets(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks are examples, not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_of_a_page_exists(page: Path) -> None:
    missing = [t for t in targets(page) if not (page.parent / t.split("#")[0]).exists()]
    assert missing == [], f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_a_missing_target_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "![a picture](images/none.png) and [the guide](guide.md) and [web](https://example.org)\n"
    )
    assert targets(page) == ["images/none.png", "guide.md"]
