"""HTML pages: visible text only (no scripts, styles, navigation or footers), h1-h6 form
heading paths. Read with the standard library's lenient HTMLParser, which takes any input."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from retrieval.extract.base import Extracted, Part, normalise, one_line
from retrieval.extract.outline import Outline, first_heading

_SKIP = frozenset(
    {"script", "style", "nav", "footer", "noscript", "template", "svg", "head", "iframe"}
)
_HEAD_CONTENT = frozenset(
    {"head", "title", "meta", "link", "style", "script", "base", "noscript", "template"}
)
_SKIP_IF_CLOSED = frozenset({"nav", "footer", "noscript", "template", "svg", "iframe"})
_BLOCK = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "details",
    "dialog", "div", "dl", "fieldset", "figcaption", "figure", "form", "header", "hr", "html",
    "main", "ol", "p", "pre", "section", "summary", "table", "ul",
}  # fmt: skip
_LINE = {"li", "dd", "dt", "tr", "br"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr", "col", "area", "base"}
_WHITESPACE_RUN = re.compile(r"\s+")


def extract_html(text: str, stem: str) -> Extracted:
    """Sections at headings. The title is the first heading, else <title>, else `stem`."""
    parser = _HtmlText(_SKIP)
    parser.feed(text)
    parts = parser.finish()
    # An unclosed <nav> or <footer> swallowed the rest of the page: keep it all rather than lose
    # content (script and style end at their end tag whatever happens).
    if parser.unclosed & _SKIP_IF_CLOSED:
        parser = _HtmlText(_SKIP - _SKIP_IF_CLOSED)
        parser.feed(text)
        parts = parser.finish()
    title = first_heading(parts, "") or one_line("".join(parser.title)) or stem
    return Extracted.build("html", title, parts)


def _is_heading(tag: str) -> bool:
    return len(tag) == 2 and tag[0] == "h" and tag[1] in "123456"


class _HtmlText(HTMLParser):
    """Feeds an Outline: block elements end paragraphs, list items, rows and <br> end lines,
    table cells are joined by " | ". Content inside `skip` elements is dropped."""

    def __init__(self, skip: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.skip = skip
        self.outline = Outline()
        self.title: list[str] = []
        self._skip: dict[str, int] = {}
        self._in_title = False
        self._pre = 0
        self._heading: tuple[int, list[str]] | None = None
        self._paragraph: list[str] = []
        self._cells = 0

    @property
    def unclosed(self) -> set[str]:
        """Skipped elements still open at the end of the page."""
        return {tag for tag, depth in self._skip.items() if depth}

    def finish(self) -> list[Part]:
        self.close()
        if self._heading is not None:
            self._end_heading()
        self._flush()
        return self.outline.parts()

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag not in _HEAD_CONTENT:
            self._skip.pop("head", None)  # as in browsers, body content ends an unclosed <head>
        if tag in self.skip:
            self._skip[tag] = self._skip.get(tag, 0) + 1
        if any(self._skip.values()):
            return
        if _is_heading(tag):
            self._flush()
            self._heading = (int(tag[1]), [])
        elif tag in _BLOCK:
            self._flush()
            self._pre += tag == "pre"
        elif tag in _LINE:
            self._paragraph.append("\n")
            self._cells = 0
        elif tag in ("td", "th"):
            self._paragraph.append(" | " if self._cells else "")
            self._cells += 1

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.skip:
            self._skip[tag] = max(0, self._skip.get(tag, 0) - 1)
            return
        if any(self._skip.values()):
            return
        if self._heading and _is_heading(tag):
            self._end_heading()
        elif tag in _BLOCK:
            self._flush()
            self._pre = max(0, self._pre - (tag == "pre"))
        elif tag in _LINE:
            self._paragraph.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if any(self._skip.values()):
            return
        if self._heading is not None:
            self._heading[1].append(data)
        else:  # source line breaks are spaces; "\n" in a paragraph only comes from <br>, <li>...
            self._paragraph.append(data if self._pre else _WHITESPACE_RUN.sub(" ", data))

    def _flush(self) -> None:
        text = "".join(self._paragraph)
        self._paragraph = []
        if not self._pre:
            lines = (" ".join(line.split()) for line in text.split("\n"))
            text = "\n".join(line for line in lines if line)
        self.outline.add_text(normalise(text))

    def _end_heading(self) -> None:
        assert self._heading is not None
        level, fragments = self._heading
        self._heading = None
        text = " ".join("".join(fragments).split())
        if text:
            self.outline.add_heading(level, text[:200], text)
