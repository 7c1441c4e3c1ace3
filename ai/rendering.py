"""Model output as HTML a browser can show safely: markdown rendered with raw HTML off, then
sanitised by nh3 (Ammonia) to a short list of tags, with no images (nothing loads from a URL
the model chose), links only to http(s)/mailto, opened without a referrer; then [n] citations
become links to their sources. A model that writes `<script>` or `<img onerror=...>` gets
text on the page, never markup."""

from __future__ import annotations

import re

import nh3
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")
TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
_CITATION = re.compile(r"\[(\d{1,2})\]")
_TAG = re.compile(r"(<[^>]*>)")


def render_answer(text: str, citations: list[dict]) -> SafeString:
    html = nh3.clean(
        _MARKDOWN.render(text),
        tags=TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    sources = {c["index"]: c for c in citations}

    def link(match: re.Match[str]) -> str:
        source = sources.get(int(match[1]))
        if source is None:
            return match[0]
        label = escape(
            f"{source['title']}, page {source['page']}" if source.get("page") else source["title"]
        )
        return f'<a class="citation" href="{citation_url(source)}" title="{label}">[{match[1]}]</a>'

    # Only in text between tags: never inside an attribute the sanitiser kept.
    parts = _TAG.split(html)
    html = "".join(part if part.startswith("<") else _CITATION.sub(link, part) for part in parts)
    return mark_safe(html)  # noqa: S308 (sanitised above; our links use escaped values)


def citation_url(source: dict) -> str:
    url = reverse("document_by_public_id", args=[source["document_id"]])
    return f"{url}?chunk={source.get('chunk_index', 0)}"
