"""{{ message|answer_html }}: an answer's text as sanitised HTML with its [n] citations linked."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from ai.models import Message
from ai.rendering import citation_url, render_answer

register = template.Library()


@register.filter
def answer_html(message: Message) -> SafeString:
    return render_answer(message.content, message.citations)


@register.filter
def source_url(citation: dict) -> str:
    return citation_url(citation)
