"""What every extractor shares: the result types, the refusal, the limits and text clean-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_TEXT_CHARS = 16 * 1024 * 1024  # extracted text, all sections together
SUPPORTED = "PDF, Word (.docx), HTML, Markdown or plain UTF-8 text"
SECTION_SEPARATOR = "\n\n"

# (text, page, heading_path): what the format extractors produce, before offsets are known.
type Part = tuple[str, int | None, tuple[str, ...]]


class UnsupportedDocument(ValueError):
    """The file cannot be turned into text; `message` says why, in words meant for the uploader."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text with one page (PDF, 1-based; None elsewhere) and one heading path.
    `start` is the offset of `text` in the owning `Extracted.text`."""

    text: str
    page: int | None
    heading_path: tuple[str, ...]
    start: int


@dataclass(frozen=True)
class Extracted:
    """What `extract` found. `warnings` lists content that could not be read and was left out
    (e.g. PDF pages without a text layer), for the uploader to see."""

    kind: str
    title: str
    sections: list[Section]
    warnings: tuple[str, ...] = field(default=())

    @cached_property
    def text(self) -> str:
        """All sections joined by a blank line; `Section.start` indexes into this."""
        return SECTION_SEPARATOR.join(section.text for section in self.sections)

    @classmethod
    def build(
        cls, kind: str, title: str, parts: list[Part], warnings: tuple[str, ...] = ()
    ) -> Extracted:
        """From (text, page, heading_path) parts: computes each section's `start`, leaves out
        parts with no text. Raises UnsupportedDocument if nothing or too much text is left."""
        sections, offset = [], 0
        for text, page, path in parts:
            if not text.strip():
                continue
            sections.append(Section(text, page, path, offset))
            offset += len(text) + len(SECTION_SEPARATOR)
        if not sections:
            raise UnsupportedDocument("The document contains no text.")
        if offset > MAX_TEXT_CHARS:
            raise UnsupportedDocument(
                f"The document holds more than {MAX_TEXT_CHARS // 1_000_000} million characters "
                "of text; split it into smaller files."
            )
        return cls(kind, title, sections, warnings)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff\ufffe]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_NEWLINES = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\x85": "\n", "\u2028": "\n"})


def normalise(text: str) -> str:
    """Unix newlines, no control characters, no trailing spaces, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2029", "\n\n")
    text = _CONTROL.sub("", text.translate(_NEWLINES))
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line with single spaces, at most `limit` characters (titles, headings)."""
    return " ".join(text.split())[:limit].strip()
