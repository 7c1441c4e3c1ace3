"""Answers from the knowledge base: retrieve, then one gateway call with the hits as quoted,
numbered context; the answer cites them as [1], [2]."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from ai.gateway import Caller, ContextDoc, Prompt, Result, complete_sync
from retrieval.selectors import Hit, knowledge_search
from tenants.models import Tenant

NOT_FOUND = "I could not find anything about this in your documents."
_CITATION = re.compile(r"\[(\d{1,2})\]")


@dataclass
class Answer:
    text: str
    hits: list[Hit]
    result: Result | None = None
    cited: list[int] = field(default_factory=list)  # 1-based positions in `hits`


def context_docs(hits: list[Hit]) -> list[ContextDoc]:
    def title(hit: Hit) -> str:
        return f"{hit.title}, page {hit.page}" if hit.page else hit.title

    return [ContextDoc(f"chunk:{hit.chunk_id}", hit.text, title(hit)) for hit in hits]


def knowledge_answer(
    *, tenant: Tenant, question: str, tags: list[str] | None = None, user_id: int | None = None
) -> Answer:
    hits = knowledge_search(tenant=tenant, query=question, tags=tags, user_id=user_id)
    if not hits:
        return Answer(NOT_FOUND, [])
    result = complete_sync(
        caller=Caller(tenant, "answer", f"answer:{uuid.uuid4().hex}", user_id=user_id),
        messages=[{"role": "user", "content": question}],
        prompt=Prompt("answer", {"organization": tenant.name}),
        context=context_docs(hits),
    )
    return Answer(result.text, hits, result, cited_numbers(result.text, len(hits)))


def cited_numbers(text: str, sources: int) -> list[int]:
    """The source numbers an answer cites as [n] (1-based, only those that exist), sorted."""
    return sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= sources})
