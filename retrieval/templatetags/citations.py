"""{{ answer.text|cite:answer.hits }}: the answer, escaped, with [n] linking to its source."""

from __future__ import annotations

import re

from django import template
from django.urls import reverse
from django.utils.html import escape, linebreaks
from django.utils.safestring import SafeString, mark_safe

register = template.Library()
_CITATION = re.compile(r"\[(\d{1,2})\]")


@register.filter
def cite(text: str, hits: list) -> SafeString:
    def link(match: re.Match[str]) -> str:
        number = int(match[1])
        if not 1 <= number <= len(hits):
            return match[0]
        hit = hits[number - 1]
        url = reverse("document", args=[hit.document_id]) + f"#chunk-{hit.index}"
        label = escape(f"{hit.title}, page {hit.page}" if hit.page else hit.title)
        return f'<a href="{url}" title="{label}">[{number}]</a>'

    # Escaped first, so the model's output can never inject markup; only our links are added.
    return mark_safe(_CITATION.sub(link, linebreaks(escape(text))))  # noqa: S308
