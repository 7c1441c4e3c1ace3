"""PDF documents (pypdf): one section per page with a text layer, bounded in pages and time."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

from retrieval.extract.base import Extracted, Part, UnsupportedDocument, normalise, one_line

if TYPE_CHECKING:
    from pypdf import PdfReader

MAX_PDF_PAGES = 3000
MAX_LISTED_PAGES = 20  # in the warning about pages without text


def extract_pdf(data: bytes, stem: str, *, timeout_s: float) -> Extracted:
    """One section per page that has text, numbered from 1; pages without text are left out
    and listed in `warnings`. The title is the metadata title, else `stem`. Raises
    UnsupportedDocument for a damaged, password-protected, too long or too slow PDF."""
    # A hostile or broken PDF can keep pypdf busy for minutes on a handful of pages. The clock
    # is checked before each page, so the overrun is at most one page's work (pypdf cannot be
    # interrupted inside a page).
    deadline = time.monotonic() + timeout_s
    reader, count = _open(data)
    pages = reader.pages
    if count > MAX_PDF_PAGES:
        raise UnsupportedDocument(f"The PDF has {count} pages; the limit is {MAX_PDF_PAGES}.")
    parts: list[Part] = []
    blank: list[int] = []
    for number in range(1, count + 1):
        if time.monotonic() >= deadline:
            raise UnsupportedDocument(
                f"The PDF took longer than {timeout_s:g} s to read; reading stopped at page "
                f"{number} of {count}. It may be damaged or unusually complex: print it to a "
                "new PDF or split it into smaller files, and try again."
            )
        try:
            page_text = normalise(pages[number - 1].extract_text() or "")
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
    return Extracted.build("pdf", _title(reader) or stem, parts, _blank_page_warnings(blank))


def _open(data: bytes) -> tuple[PdfReader, int]:
    """The reader and its page count; decrypted if only an owner password (none to open the
    file) is set."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(
                "The PDF is password-protected; remove the password and upload it again."
            )
        count = len(reader.pages)  # walks the page tree, which may be broken
    except UnsupportedDocument:
        raise
    except Exception as exc:
        raise UnsupportedDocument(
            "The PDF is damaged or encrypted in a way that cannot be read; re-save or export "
            "it and try again."
        ) from exc
    return reader, count


def _title(reader: PdfReader) -> str:
    try:
        return one_line(str((reader.metadata or {}).get("/Title") or ""))
    except Exception:  # damaged metadata costs the title, not the document
        return ""


def _blank_page_warnings(blank: list[int]) -> tuple[str, ...]:
    if not blank:
        return ()
    listed = ", ".join(map(str, blank[:MAX_LISTED_PAGES]))
    more = " …" if len(blank) > MAX_LISTED_PAGES else ""
    return (f"Pages without a text layer (scanned?) were left out: {listed}{more}.",)
