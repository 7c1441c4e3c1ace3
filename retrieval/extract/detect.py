"""The type of an upload, judged from its content, and a safe name for it."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from retrieval.extract.base import SUPPORTED, UnsupportedDocument
from retrieval.extract.docx import open_docx_zip

MAX_FILENAME_CHARS = 120
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn", ".mdx"}

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
    """What a known non-document binary is ("a PNG image"), for the refusal; None otherwise."""
    for signature, what in _BINARY_SIGNATURES:
        if data.startswith(signature):
            return what
    if data[4:8] == b"ftyp":
        return "a video or HEIC image"
    if data.startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "an image, audio or video file"
    return None


def _decode(data: bytes) -> str:
    """UTF-8 (BOM optional), UTF-16/32 only with a BOM (without one the encoding would be a
    guess). Anything else, e.g. Latin-1, is refused rather than decoded to mojibake."""
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


def detect(data: bytes, filename: str) -> tuple[str, str | None]:
    """(kind, decoded text for the text kinds). A ZIP is reported as "docx" unopened: opening
    it is the caller's confirmation (or refusal). Raises UnsupportedDocument."""
    if not data:
        raise UnsupportedDocument("The file is empty.")
    if data.lstrip(b" \t\r\n\x0c\x00")[:5] == b"%PDF-":
        return "pdf", None
    if data.startswith(_ZIP_SIGNATURES):
        return "docx", None
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


def detect_type(data: bytes, filename: str) -> str:
    """ "pdf", "docx", "html", "markdown" or "text", judged by the content (magic bytes, a ZIP
    holding word/document.xml, HTML and Markdown syntax); the filename's extension only breaks
    the tie between text and Markdown. Raises UnsupportedDocument for anything else."""
    kind, _ = detect(data, filename)
    if kind == "docx":
        open_docx_zip(data).close()
    return kind
