"""Word (.docx) documents: paragraphs and tables in order, Heading styles form heading paths."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from retrieval.extract.base import SUPPORTED, Extracted, UnsupportedDocument, normalise, one_line
from retrieval.extract.outline import Outline, first_heading

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

MAX_UNZIPPED_BYTES = 128 * 1024 * 1024  # a DOCX's parts are all read into memory
MAX_ZIP_ENTRIES = 5000

_ZIP_KINDS = (
    ("xl/workbook.xml", "an Excel workbook"),
    ("ppt/presentation.xml", "a PowerPoint presentation"),
    ("content.xml", "an OpenDocument file"),
    ("META-INF/container.xml", "an e-book"),
)
_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def open_docx_zip(data: bytes) -> zipfile.ZipFile:
    """The archive, once it is known to be a Word document small enough to unpack. Raises
    UnsupportedDocument naming what the ZIP is otherwise (workbook, e-book...)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UnsupportedDocument(
            "The file looks like a ZIP or Word document but is damaged; re-save it and try again."
        ) from None
    names = {info.filename for info in infos}
    if "word/document.xml" not in names:
        what = next((kind for part, kind in _ZIP_KINDS if part in names), "a ZIP archive")
        raise UnsupportedDocument(
            f"The file is {what}, which is not supported; upload {SUPPORTED}."
        )
    # Declared sizes bound what zipfile will inflate (a lying entry fails its CRC check).
    if len(infos) > MAX_ZIP_ENTRIES or sum(info.file_size for info in infos) > MAX_UNZIPPED_BYTES:
        raise UnsupportedDocument(
            "The Word document unpacks to more than "
            f"{MAX_UNZIPPED_BYTES // (1024 * 1024)} MB; split it into smaller files."
        )
    return archive


def extract_docx(data: bytes, stem: str) -> Extracted:
    """Sections at Heading 1-9 (and Title) paragraphs; tables as "cell | cell" lines. The title
    is the first heading, else the document's core-properties title, else `stem`."""
    from docx import Document
    from docx.table import Table

    # The ZIP checks come first: python-docx would inflate an archive bomb without asking.
    open_docx_zip(data).close()
    try:
        document = Document(io.BytesIO(data))
    except Exception as exc:
        raise UnsupportedDocument(
            "The Word document is damaged or not a .docx file (macro-enabled and template files "
            "are not supported); re-save it as .docx and try again."
        ) from exc
    outline = Outline()
    for block in _blocks(document.element.body, document._body):
        if isinstance(block, Table):
            outline.add_text(_table_text(block))
            continue
        level = _heading_level(block)
        text = normalise(block.text)
        if level is not None and text:
            outline.add_heading(level, one_line(text), text)
        else:
            outline.add_text(text)
    parts = outline.parts()
    title = first_heading(parts, "") or one_line(document.core_properties.title or "") or stem
    return Extracted.build("docx", title, parts)


def _heading_level(paragraph: Paragraph) -> int | None:
    """0 for Title, 1-9 for Heading N, following base styles (a custom style based on Heading 2
    is a heading too), a few hops at most in case the style chain loops."""
    style, hops = paragraph.style, 0
    while style is not None and hops < 5:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        style, hops = style.base_style, hops + 1
    return None


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell repeats across the cells it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _blocks(element, parent) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in document order, including those inside content controls
    (w:sdt), which python-docx's own iterator skips."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in element.iterchildren():
        if child.tag == qn("w:p"):
            yield Paragraph(child, parent)
        elif child.tag == qn("w:tbl"):
            yield Table(child, parent)
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _blocks(content, parent)
