"""Plain text (one section) and Markdown (sections at headings, text kept as written)."""

from __future__ import annotations

import re

from retrieval.extract.base import Extracted, normalise
from retrieval.extract.outline import Outline, first_heading

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_MD_MARKS = re.compile(r"[*_`]+")


def extract_text(text: str, stem: str) -> Extracted:
    """The whole text as one section, titled by the file name (plain text has no headings)."""
    return Extracted.build("text", stem, [(normalise(text), None, ())])


def extract_markdown(text: str, stem: str) -> Extracted:
    """Sections at ATX and setext headings outside code fences and front matter; the text is
    kept as written. The title is the first heading, else `stem`."""
    lines = normalise(text).split("\n")
    outline = Outline()
    paragraph: list[str] = []
    fence = ""
    front_matter = bool(lines) and lines[0].strip() == "---"

    def flush() -> None:
        outline.add_text("\n".join(paragraph).strip("\n"))
        paragraph.clear()

    for number, line in enumerate(lines):
        if front_matter:
            paragraph.append(line)
            front_matter = number == 0 or line.strip() not in ("---", "...")
            continue
        fence_match = _FENCE.match(line)
        if fence:
            paragraph.append(line)
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
            ):
                fence = ""
            continue
        if fence_match:
            fence = fence_match.group(1)
            paragraph.append(line)
            continue
        atx = _ATX.match(line)
        setext = _SETEXT.match(line)
        if atx and _plain(atx.group(2) or ""):
            flush()
            outline.add_heading(len(atx.group(1)), _plain(atx.group(2))[:200], line.strip())
        elif setext and paragraph and paragraph[-1].strip():
            heading = paragraph.pop()
            flush()
            level = 1 if setext.group(1)[0] == "=" else 2
            outline.add_heading(level, _plain(heading)[:200], f"{heading}\n{line}")
        elif not line.strip():
            if paragraph:
                paragraph.append(line)
        else:
            paragraph.append(line)
    flush()
    parts = [(text.strip(), page, path) for text, page, path in outline.parts()]
    return Extracted.build("markdown", first_heading(parts, stem), parts)


def _plain(text: str) -> str:
    """A heading without its Markdown: link text instead of links, no emphasis or code marks."""
    return " ".join(_MD_MARKS.sub("", _MD_LINK.sub(r"\1", text)).split())
