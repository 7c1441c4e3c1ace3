"""Text out of uploaded documents: the type is judged from the content, never trusted from the name.

    extracted = extract(data, "report.pdf")   # Extracted(kind, title, sections, warnings)
    extracted.text                            # sections joined by a blank line
    extracted.sections[0].start               # where that section begins in `extracted.text`

Supported: PDF (one section per page, pypdf), DOCX (python-docx, Heading styles form heading
paths), HTML (stdlib parser, headings form heading paths), Markdown (`#` headings) and plain text
(UTF-8, with or without BOM; UTF-16 with BOM). Anything else, and anything damaged, encrypted,
oversized, too slow to read or without text, raises `UnsupportedDocument` with a reason a user
can act on; no input makes these functions raise anything else.

One module per concern: `detect` (type, file names), `text` (plain text, Markdown), `html`,
`pdf`, `docx`; `base` holds the shared types and `outline` the heading structure.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings

from retrieval.extract.base import (
    MAX_DOCUMENT_BYTES,
    Extracted,
    Section,
    UnsupportedDocument,
)
from retrieval.extract.detect import MAX_FILENAME_CHARS, detect, detect_type, sanitise_filename
from retrieval.extract.docx import extract_docx
from retrieval.extract.html import extract_html
from retrieval.extract.pdf import extract_pdf
from retrieval.extract.text import extract_markdown, extract_text

__all__ = [
    "MAX_FILENAME_CHARS",
    "Extracted",
    "Section",
    "UnsupportedDocument",
    "detect_type",
    "extract",
    "sanitise_filename",
]


def extract(
    data: bytes,
    filename: str,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    timeout_s: float | None = None,
) -> Extracted:
    """The text of `data` in sections (see module docstring). The title is the first heading,
    else the PDF/HTML/DOCX metadata title, else the file name's stem. A PDF may take at most
    `timeout_s` seconds to read (default: settings.RETRIEVAL_EXTRACT_TIMEOUT_S). Raises
    UnsupportedDocument, and nothing else, for any input it cannot read."""
    if len(data) > max_bytes:
        raise UnsupportedDocument(
            f"The file is {len(data) / 1_048_576:.1f} MB; the limit is "
            f"{max_bytes / 1_048_576:.0f} MB."
        )
    if timeout_s is None:
        timeout_s = settings.RETRIEVAL_EXTRACT_TIMEOUT_S
    kind, text = detect(bytes(data), filename)
    stem = PurePosixPath(sanitise_filename(filename)).stem or "document"
    try:
        if kind == "pdf":
            return extract_pdf(data, stem, timeout_s=timeout_s)
        if kind == "docx":
            return extract_docx(data, stem)
        assert text is not None
        if kind == "html":
            return extract_html(text, stem)
        if kind == "markdown":
            return extract_markdown(text, stem)
        return extract_text(text, stem)
    except UnsupportedDocument:
        raise
    except RecursionError:
        raise UnsupportedDocument("The document is nested too deeply to read.") from None
    except Exception as exc:  # a parser's bug or a malformed file must not become a 500
        raise UnsupportedDocument(
            f"The {kind.upper()} file could not be read ({type(exc).__name__}); it may be "
            "damaged. Re-save or export it and try again."
        ) from exc
