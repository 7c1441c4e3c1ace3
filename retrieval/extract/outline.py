"""Sections by headings, for the formats that have headings (DOCX, HTML, Markdown)."""

from __future__ import annotations

from retrieval.extract.base import SECTION_SEPARATOR, Part, one_line


class Outline:
    """Paragraphs grouped into sections by headings. A heading directly followed by a deeper
    heading stays in the text of the deeper section, so no section is just a heading."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self._sections: list[tuple[tuple[str, ...], list[str], bool]] = [((), [], False)]

    def add_heading(self, level: int, title: str, text: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        self._sections.append((tuple(t for _, t in self._stack), [text], True))

    def add_text(self, text: str) -> None:
        if text.strip():
            self._sections[-1][1].append(text)

    def parts(self) -> list[Part]:
        out: list[Part] = []
        pending: list[tuple[tuple[str, ...], str]] = []  # heading-only sections, each nested
        for path, paragraphs, has_heading in self._sections:
            text = SECTION_SEPARATOR.join(paragraphs)
            if pending and not (
                len(path) > len(pending[-1][0]) and path[: len(pending[-1][0])] == pending[-1][0]
            ):
                out.extend((t, None, p) for p, t in pending)
                pending = []
            if has_heading and len(paragraphs) == 1:
                pending.append((path, text))
                continue
            if pending:
                text = SECTION_SEPARATOR.join([t for _, t in pending] + [text])
                pending = []
            out.append((text, None, path))
        out.extend((t, None, p) for p, t in pending)
        return out


def first_heading(parts: list[Part], fallback: str) -> str:
    """The top of the first heading path (the document's own title), else `fallback`."""
    for _text, _page, path in parts:
        if path:
            return one_line(path[0]) or fallback
    return fallback
