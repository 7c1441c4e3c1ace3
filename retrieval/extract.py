"""Text out of uploaded documents: the type is judged from the content, never trusted from the name.

    extracted = extract(data, "report.pdf")   # Extracted(kind, title, sections)
    extracted.text                            # sections joined by a blank line
    extracted.sections[0].start               # where that section begins in `extracted.text`

Supported: PDF (one section per page, pypdf), DOCX (python-docx, Heading styles form heading
paths), HTML (stdlib parser, headings form heading paths), Markdown (`#` headings) and plain text
(UTF-8, with or without BOM; UTF-16 with BOM). Anything else, and anything damaged, encrypted,
oversized or without text, raises `UnsupportedDocument` with a reason a user can act on; no input
makes these functions raise anything else.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from pathlib import PurePosixPath

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_TEXT_CHARS = 16 * 1024 * 1024  # extracted text, all sections together
MAX_PDF_PAGES = 3000
MAX_UNZIPPED_BYTES = 128 * 1024 * 1024  # a DOCX's parts are all read into memory
MAX_ZIP_ENTRIES = 5000
MAX_FILENAME_CHARS = 120
SUPPORTED = "PDF, Word (.docx), HTML, Markdown or plain UTF-8 text"
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn", ".mdx"}
SECTION_SEPARATOR = "\n\n"


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
        cls,
        kind: str,
        title: str,
        parts: list[tuple[str, int | None, tuple[str, ...]]],
        warnings: tuple[str, ...] = (),
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


# --- filenames and text clean-up ------------------------------------------------------------

_UNSAFE_FILENAME = re.compile(r"[^\w .()+,=@&'\[\]-]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\.|$)", re.IGNORECASE)


def sanitise_filename(name: str) -> str:
    """A display- and storage-safe file name: no folders, no control or format characters,
    letters/digits/space and a few punctuation marks, at most 120 characters with the extension
    kept, never empty, never hidden or reserved. Deterministic."""
    name = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_FILENAME.sub("_", name)
    name = re.sub(r"\s+", " ", name)
    name = re.sub(r"_{2,}", "_", name).strip(" ._")
    if len(name) > MAX_FILENAME_CHARS:
        path = PurePosixPath(name)
        suffix = path.suffix if 1 < len(path.suffix) <= 16 else ""
        name = name[: MAX_FILENAME_CHARS - len(suffix)].rstrip(" ._") + suffix
    if _WINDOWS_RESERVED.match(name):
        name = f"_{name}"
    return name or "document"


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff\ufffe]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_NEWLINES = str.maketrans({"\x0b": "\n", "\x0c": "\n", "\x85": "\n", "\u2028": "\n"})


def _normalise(text: str) -> str:
    """Unix newlines, no control characters, no trailing spaces, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2029", "\n\n")
    text = _CONTROL.sub("", text.translate(_NEWLINES))
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit].strip()


# --- type detection -------------------------------------------------------------------------

_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls/.ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard archive"),
    (b"\x7fELF", "a program"),
    (b"\xca\xfe\xba\xbe", "a program"),
    (b"\x00asm", "a WebAssembly module"),
    (b"SQLite format 3\x00", "a database file"),
    (b"OggS", "an audio or video file"),
    (b"fLaC", "an audio file"),
    (b"\x1a\x45\xdf\xa3", "a video file"),
    (b"wOFF", "a font"),
    (b"wOF2", "a font"),
)
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_ZIP_KINDS = (
    ("xl/workbook.xml", "an Excel workbook"),
    ("ppt/presentation.xml", "a PowerPoint presentation"),
    ("content.xml", "an OpenDocument file"),
    ("META-INF/container.xml", "an e-book"),
)
_XML_PROLOGUE = r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
_HTML_START = re.compile(_XML_PROLOGUE + r"<(?:!doctype\s+html|html|head|body)\b", re.I | re.S)
_SVG_START = re.compile(_XML_PROLOGUE + r"(?:<!doctype\s+svg[^>]*>\s*)?<svg\b", re.I | re.S)
_HTML_TAG = re.compile(
    r"</?(?:a|article|aside|b|blockquote|body|br|caption|code|dd|div|dl|dt|em|figure|footer|form"
    r"|h[1-6]|head|header|hr|html|i|img|input|li|link|main|meta|nav|ol|p|pre|script|section|span"
    r"|strong|style|table|tbody|td|th|thead|title|tr|u|ul)\b[^<>]{0,500}>",
    re.I,
)
_MD_STRONG = (
    re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M),  # ATX heading
    re.compile(r"^ {0,3}(?:```|~~~)", re.M),  # code fence
    re.compile(r"!?\[[^\]\n]{1,300}\]\([^()\s]{1,1000}(?:\s+\"[^\"\n]*\")?\)"),  # link / image
    re.compile(r"^[^\s|].*\n {0,3}=+[ \t]*$", re.M),  # setext heading
    re.compile(r"^ {0,3}\|?[ \t]*:?-{3,}:?[ \t]*\|", re.M),  # table rule
)
_MD_WEAK = (
    re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.M),  # list item
    re.compile(r"(\*\*|__)\S[^\n]{0,200}?\S\1|`[^`\n]{1,200}`"),  # strong emphasis / code span
    re.compile(r"^ {0,3}>[ \t]?\S", re.M),  # block quote
)


def _binary_kind(data: bytes) -> str | None:
    for signature, what in _BINARY_SIGNATURES:
        if data.startswith(signature):
            return what
    if data[4:8] == b"ftyp":
        return "a video or HEIC image"
    if data.startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "an image, audio or video file"
    return None


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        encoding = "utf-32"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise UnsupportedDocument(
            "The file is not valid UTF-8 text, nor PDF, Word (.docx) or another supported "
            "format; save it as UTF-8 text, PDF or .docx."
        ) from None
    if "\x00" in text:
        raise UnsupportedDocument(
            "The file contains NUL bytes, so it looks like a binary file rather than text; "
            f"upload {SUPPORTED}."
        )
    return text


def _looks_like_html(text: str, markdown: bool) -> bool:
    """A doctype/<html>/<head>/<body> start, or a text that starts with a tag and is dense with
    HTML tags (and has no Markdown structure: a README may open with an HTML banner)."""
    head = text[:4096]
    if _HTML_START.match(head):
        return True
    if markdown or not head.lstrip().startswith("<"):
        return False
    sample = text[:200_000]
    tags = _HTML_TAG.findall(sample)
    tag_chars = sum(len(tag) for tag in tags)
    return len(tags) >= 3 and tag_chars >= 0.1 * len("".join(sample.split()))


def _has_markdown_syntax(text: str) -> bool:
    """Headings, fences, links, setext headings or tables; lists and emphasis alone are too
    common in plain text to count."""
    sample = text[:500_000]
    strong = sum(len(pattern.findall(sample)) for pattern in _MD_STRONG)
    weak = sum(len(pattern.findall(sample)) for pattern in _MD_WEAK)
    return strong >= 2 or (strong == 1 and weak >= 2)


def _detect(data: bytes, filename: str) -> tuple[str, str | None]:
    """(kind, decoded text for text kinds)."""
    if not data:
        raise UnsupportedDocument("The file is empty.")
    if data.lstrip(b" \t\r\n\x0c\x00")[:5] == b"%PDF-":
        return "pdf", None
    if data.startswith(_ZIP_SIGNATURES):
        return "docx", None  # confirmed (or refused) when the archive is opened
    what = _binary_kind(data)
    if what is not None:
        raise UnsupportedDocument(
            f"The file is {what}, which is not supported; upload {SUPPORTED}."
        )
    text = _decode(data)
    if not text.strip():
        raise UnsupportedDocument("The document contains no text.")
    if _SVG_START.match(text[:4096]):
        raise UnsupportedDocument(
            f"The file is an SVG image, which is not supported; upload {SUPPORTED}."
        )
    markdown = _has_markdown_syntax(text)
    if _looks_like_html(text, markdown):
        return "html", text
    # Plain text is equally valid Markdown: only then does the extension decide.
    extension = PurePosixPath(sanitise_filename(filename).lower()).suffix
    return ("markdown" if markdown or extension in MARKDOWN_EXTENSIONS else "text"), text


def _open_docx_zip(data: bytes) -> zipfile.ZipFile:
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


def detect_type(data: bytes, filename: str) -> str:
    """ "pdf", "docx", "html", "markdown" or "text", judged by the content (magic bytes, a ZIP
    holding word/document.xml, HTML and Markdown syntax); the filename's extension only breaks
    the tie between text and Markdown. Raises UnsupportedDocument for anything else."""
    kind, _ = _detect(data, filename)
    if kind == "docx":
        _open_docx_zip(data).close()
    return kind


# --- extraction -----------------------------------------------------------------------------


def extract(data: bytes, filename: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Extracted:
    """The text of `data` in sections (see module docstring). The title is the first heading,
    else the PDF/HTML metadata title, else the file name's stem. Raises UnsupportedDocument,
    and nothing else, for any input it cannot read."""
    if len(data) > max_bytes:
        raise UnsupportedDocument(
            f"The file is {len(data) / 1_048_576:.1f} MB; the limit is "
            f"{max_bytes / 1_048_576:.0f} MB."
        )
    kind, text = _detect(bytes(data), filename)
    stem = PurePosixPath(sanitise_filename(filename)).stem or "document"
    try:
        if kind == "pdf":
            return _extract_pdf(data, stem)
        if kind == "docx":
            return _extract_docx(data, stem)
        assert text is not None
        if kind == "html":
            return _extract_html(text, stem)
        if kind == "markdown":
            return _extract_markdown(text, stem)
        return Extracted.build("text", stem, [(_normalise(text), None, ())])
    except UnsupportedDocument:
        raise
    except RecursionError:
        raise UnsupportedDocument("The document is nested too deeply to read.") from None
    except Exception as exc:  # a parser's bug or a malformed file must not become a 500
        raise UnsupportedDocument(
            f"The {kind.upper()} file could not be read ({type(exc).__name__}); it may be "
            "damaged. Re-save or export it and try again."
        ) from exc


def _title(parts: list[tuple[str, int | None, tuple[str, ...]]], fallback: str) -> str:
    for _text, _page, path in parts:
        if path:
            return _one_line(path[0]) or fallback
    return fallback


def _extract_pdf(data: bytes, stem: str) -> Extracted:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(
                "The PDF is password-protected; remove the password and upload it again."
            )
        pages = reader.pages
        count = len(pages)
    except UnsupportedDocument:
        raise
    except Exception as exc:
        raise UnsupportedDocument(
            "The PDF is damaged or encrypted in a way that cannot be read; re-save or export "
            "it and try again."
        ) from exc
    if count > MAX_PDF_PAGES:
        raise UnsupportedDocument(f"The PDF has {count} pages; the limit is {MAX_PDF_PAGES}.")
    parts: list[tuple[str, int | None, tuple[str, ...]]] = []
    blank: list[int] = []
    for number in range(1, count + 1):
        try:
            page_text = _normalise(pages[number - 1].extract_text() or "")
        except Exception as exc:
            raise UnsupportedDocument(
                f"Page {number} of the PDF could not be read; it may be damaged."
            ) from exc
        if page_text:
            parts.append((page_text, number, ()))
        else:
            blank.append(number)
    if not parts:
        raise UnsupportedDocument(
            "The PDF has no text layer (scanned?); run it through OCR and upload the result."
        )
    warnings = ()
    if blank:
        listed = ", ".join(map(str, blank[:20])) + (" …" if len(blank) > 20 else "")
        warnings = (f"Pages without a text layer (scanned?) were left out: {listed}.",)
    try:
        title = _one_line(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:
        title = ""
    return Extracted.build("pdf", title or stem, parts, warnings)


_DOCX_HEADING = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def _docx_heading_level(paragraph) -> int | None:
    style, hops = paragraph.style, 0
    while style is not None and hops < 5:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        match = _DOCX_HEADING.match(name)
        if match:
            return int(match.group(1))
        style, hops = style.base_style, hops + 1
    return None


def _table_text(table) -> str:
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


def _docx_blocks(element, parent):
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
                yield from _docx_blocks(content, parent)


def _extract_docx(data: bytes, stem: str) -> Extracted:
    from docx import Document
    from docx.table import Table

    with _open_docx_zip(data):
        pass
    try:
        document = Document(io.BytesIO(data))
    except Exception as exc:
        raise UnsupportedDocument(
            "The Word document is damaged or not a .docx file (macro-enabled and template files "
            "are not supported); re-save it as .docx and try again."
        ) from exc
    outline = _Outline()
    for block in _docx_blocks(document.element.body, document._body):
        if isinstance(block, Table):
            outline.add_text(_table_text(block))
            continue
        level = _docx_heading_level(block)
        text = _normalise(block.text)
        if level is not None and text:
            outline.add_heading(level, _one_line(text), text)
        else:
            outline.add_text(text)
    parts = outline.parts()
    title = _title(parts, "") or _one_line(document.core_properties.title or "") or stem
    return Extracted.build("docx", title, parts)


class _Outline:
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

    def parts(self) -> list[tuple[str, int | None, tuple[str, ...]]]:
        out: list[tuple[str, int | None, tuple[str, ...]]] = []
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


_HTML_SKIP = frozenset(
    {"script", "style", "nav", "footer", "noscript", "template", "svg", "head", "iframe"}
)
_HTML_HEAD_CONTENT = frozenset(
    {"head", "title", "meta", "link", "style", "script", "base", "noscript", "template"}
)
_HTML_SKIP_IF_CLOSED = frozenset({"nav", "footer", "noscript", "template", "svg", "iframe"})
_HTML_BLOCK = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "details",
    "dialog", "div", "dl", "fieldset", "figcaption", "figure", "form", "header", "hr", "html",
    "main", "ol", "p", "pre", "section", "summary", "table", "ul",
}  # fmt: skip
_HTML_LINE = {"li", "dd", "dt", "tr", "br"}
_WHITESPACE_RUN = re.compile(r"\s+")
_HTML_VOID = {"br", "hr", "img", "input", "meta", "link", "source", "wbr", "col", "area", "base"}


class _HtmlText(HTMLParser):
    def __init__(self, skip: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.skip = skip
        self.outline = _Outline()
        self.title: list[str] = []
        self._skip: dict[str, int] = {}
        self._in_title = False
        self._pre = 0
        self._heading: tuple[int, list[str]] | None = None
        self._paragraph: list[str] = []
        self._cells = 0

    def _flush(self) -> None:
        text = "".join(self._paragraph)
        self._paragraph = []
        if not self._pre:
            lines = (" ".join(line.split()) for line in text.split("\n"))
            text = "\n".join(line for line in lines if line)
        self.outline.add_text(_normalise(text))

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag not in _HTML_HEAD_CONTENT:
            self._skip.pop("head", None)  # as in browsers, body content ends an unclosed <head>
        if tag in self.skip:
            self._skip[tag] = self._skip.get(tag, 0) + 1
        if any(self._skip.values()):
            return
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._flush()
            self._heading = (int(tag[1]), [])
        elif tag in _HTML_BLOCK:
            self._flush()
            self._pre += tag == "pre"
        elif tag in _HTML_LINE:
            self._paragraph.append("\n")
            self._cells = 0
        elif tag in ("td", "th"):
            self._paragraph.append(" | " if self._cells else "")
            self._cells += 1

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _HTML_VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.skip:
            self._skip[tag] = max(0, self._skip.get(tag, 0) - 1)
            return
        if any(self._skip.values()):
            return
        if self._heading and len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._end_heading()
        elif tag in _HTML_BLOCK:
            self._flush()
            self._pre = max(0, self._pre - (tag == "pre"))
        elif tag in _HTML_LINE:
            self._paragraph.append("\n")

    def _end_heading(self) -> None:
        assert self._heading is not None
        level, fragments = self._heading
        self._heading = None
        text = " ".join("".join(fragments).split())
        if text:
            self.outline.add_heading(level, text[:200], text)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if any(self._skip.values()):
            return
        if self._heading is not None:
            self._heading[1].append(data)
        else:  # source line breaks are spaces; "\n" in a paragraph only comes from <br>, <li>...
            self._paragraph.append(data if self._pre else _WHITESPACE_RUN.sub(" ", data))

    @property
    def unclosed(self) -> set[str]:
        return {tag for tag, depth in self._skip.items() if depth}

    def finish(self) -> list[tuple[str, int | None, tuple[str, ...]]]:
        self.close()
        if self._heading is not None:
            self._end_heading()
        self._flush()
        return self.outline.parts()


def _extract_html(text: str, stem: str) -> Extracted:
    parser = _HtmlText(_HTML_SKIP)
    parser.feed(text)
    parts = parser.finish()
    # An unclosed <nav> or <footer> swallowed the rest of the page: keep it all rather than lose
    # content (script and style end at their end tag whatever happens).
    if parser.unclosed & _HTML_SKIP_IF_CLOSED:
        parser = _HtmlText(_HTML_SKIP - _HTML_SKIP_IF_CLOSED)
        parser.feed(text)
        parts = parser.finish()
    title = _title(parts, "") or _one_line("".join(parser.title)) or stem
    return Extracted.build("html", title, parts)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_MD_MARKS = re.compile(r"[*_`]+")


def _markdown_plain(text: str) -> str:
    return " ".join(_MD_MARKS.sub("", _MD_LINK.sub(r"\1", text)).split())


def _extract_markdown(text: str, stem: str) -> Extracted:
    """Sections at ATX and setext headings outside code fences; the text is kept as written."""
    lines = _normalise(text).split("\n")
    outline = _Outline()
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
        if atx and _markdown_plain(atx.group(2) or ""):
            flush()
            outline.add_heading(
                len(atx.group(1)), _markdown_plain(atx.group(2))[:200], line.strip()
            )
        elif setext and paragraph and paragraph[-1].strip():
            heading = paragraph.pop()
            flush()
            level = 1 if setext.group(1)[0] == "=" else 2
            outline.add_heading(level, _markdown_plain(heading)[:200], f"{heading}\n{line}")
        elif not line.strip():
            if paragraph:
                paragraph.append(line)
        else:
            paragraph.append(line)
    flush()
    parts = [(text.strip(), page, path) for text, page, path in outline.parts()]
    return Extracted.build("markdown", _title(parts, stem), parts)
