"""Chat completions: an OpenAI request mapped onto one gateway call, and the answer mapped back
onto OpenAI's `chat.completion` (or, streamed, `chat.completion.chunk`) objects.

- system and developer messages become the gateway's system prompt (in order, joined);
  user and assistant messages are the conversation.
- `model` is handed to the gateway, which decides whether the tenant may use it (plan tier,
  tenant policy); the response names the model that actually answered.
- `atrium.knowledge_base`: the last user message is searched in the tenant's knowledge base
  and the passages are given to the grounded `answer` prompt as quoted, numbered data
  (retrieval.answering), never as instructions; `atrium.citations` lists them by number.
  With nothing relevant found, the answer says so without calling a model (as the web UI).
- finish_reason is `length` when the answer used every output token it was allowed."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.urls import reverse

from ai.gateway import Caller, ContextDoc, Delta, Done, Prompt, Result, complete_sync, stream
from ai.gateway.config import config_snapshot
from ai.gateway.routing import tier_of
from ai.gateway.tokens import estimate_tokens
from ai.gateway.types import StreamItem
from ai.openai_compat.serializers import SYSTEM_ROLES
from ai.providers.base import Usage
from retrieval.answering import NOT_FOUND, context_docs
from retrieval.selectors import knowledge_search
from tenants.models import APIKey, Tenant

# An answer's token allowance for the per-minute token limit when the request sets none
# (the unused part is given back once the answer is done).
DEFAULT_ANSWER_TOKENS = 1024


@dataclass
class PreparedChat:
    """Everything a completion needs, decided before any model is called."""

    id: str  # also the usage ledger's request id
    created: int
    caller: Caller
    model: str  # as requested
    messages: list[dict[str, str]]
    system: str
    temperature: float | None
    max_tokens: int | None
    stream: bool
    include_usage: bool
    output_caps: dict[str, int]  # per model key: the most output tokens it may give here
    prompt: Prompt | None = None
    context: list[ContextDoc] = field(default_factory=list)
    citations: list[dict[str, Any]] | None = None  # None: not a knowledge-base answer
    fixed_answer: str | None = None  # answered without a model (nothing relevant found)
    # Told the tokens the answer used once it is done (settles the per-minute token charge).
    on_done: Callable[[int], None] | None = None

    @property
    def token_estimate(self) -> int:
        """The most this call may use: the prompt, plus the answer's allowance."""
        prompt = estimate_tokens(self.system) + sum(
            estimate_tokens(m["content"]) for m in self.messages
        )
        prompt += sum(estimate_tokens(doc.text) for doc in self.context)
        return prompt + (self.max_tokens or DEFAULT_ANSWER_TOKENS)


def chat_prepare(
    *,
    tenant: Tenant,
    api_key: APIKey,
    request: dict[str, Any],
    absolute_url: Callable[[str], str],
) -> PreparedChat:
    """Map a validated request (serializers.ChatCompletionCreateSerializer) and, for a
    knowledge-base answer, retrieve its passages. Raises GatewayError (search embeds)."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    messages = request["messages"]
    options = request.get("atrium") or {}
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    tier_cap = settings.AI_TIER_LIMITS[tier_of(tenant)]["max_output_tokens"]
    chat = PreparedChat(
        id=completion_id,
        created=int(time.time()),
        caller=Caller(
            tenant,
            "answer" if options.get("knowledge_base") else "chat",
            completion_id,
            api_key_id=api_key.pk,
        ),
        model=request["model"],
        messages=[
            {"role": m["role"], "content": m["content"]}
            for m in messages
            if m["role"] not in SYSTEM_ROLES
        ],
        system="\n\n".join(m["content"] for m in messages if m["role"] in SYSTEM_ROLES),
        temperature=request.get("temperature"),
        max_tokens=max_tokens,
        stream=bool(request.get("stream")),
        include_usage=bool((request.get("stream_options") or {}).get("include_usage")),
        output_caps={
            key: min(cap for cap in (max_tokens, tier_cap, spec.max_output_tokens) if cap)
            for key, spec in config_snapshot().models.items()
        },
    )
    if options.get("knowledge_base"):
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        hits = knowledge_search(
            tenant=tenant, query=question, k=options["k"], tags=options.get("tags") or None,
            api_key_id=api_key.pk,
        )  # fmt: skip
        chat.citations = [
            {
                "index": number,
                "document_id": str(hit.document_public_id),
                "title": hit.title,
                "page": hit.page,
                "url": absolute_url(reverse("api_document", args=[hit.document_public_id])),
            }
            for number, hit in enumerate(hits, 1)
        ]
        if hits:
            chat.prompt = Prompt("answer", {"organization": tenant.name})
            chat.context = context_docs(hits)
        else:
            chat.fixed_answer = NOT_FOUND
    return chat


def _gateway_kwargs(chat: PreparedChat) -> dict[str, Any]:
    return {
        "caller": chat.caller, "messages": chat.messages, "prompt": chat.prompt,
        "system": chat.system, "context": chat.context, "model": chat.model,
        "max_tokens": chat.max_tokens, "temperature": chat.temperature,
    }  # fmt: skip


def _fixed_result(chat: PreparedChat) -> Result:
    return Result(
        text=chat.fixed_answer or "", model=chat.model, provider="", usage=Usage(),
        cost_micros=0, cache_status="bypass", outcome="ok", latency_ms=0,
    )  # fmt: skip


def chat_complete(chat: PreparedChat) -> dict[str, Any]:
    """The `chat.completion` object (sync; raises GatewayError)."""
    if chat.fixed_answer is not None:
        result = _fixed_result(chat)
    else:
        result = complete_sync(**_gateway_kwargs(chat))
    _done(chat, result)
    return {
        **_envelope(chat, "chat.completion", result.model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(chat, result),
            }
        ],
        "usage": usage(result),
        **_atrium(chat),
    }


async def chat_stream_items(chat: PreparedChat) -> AsyncIterator[StreamItem]:
    """The gateway's stream items (Delta..., then Done) for this chat."""
    if chat.fixed_answer is not None:
        yield Delta(chat.fixed_answer)
        yield Done(_fixed_result(chat))
        return
    async with stream(**_gateway_kwargs(chat)) as items:
        async for item in items:
            if isinstance(item, Done):
                await sync_to_async(_done)(chat, item.result)
            yield item


def _done(chat: PreparedChat, result: Result) -> None:
    if chat.on_done is not None:
        chat.on_done(result.usage.input_tokens + result.usage.output_tokens)


# --- response shapes -------------------------------------------------------------------------


def _envelope(chat: PreparedChat, kind: str, model: str) -> dict[str, Any]:
    return {
        "id": chat.id, "object": kind, "created": chat.created, "model": model,
        "system_fingerprint": None,
    }  # fmt: skip


def _atrium(chat: PreparedChat) -> dict[str, Any]:
    return {} if chat.citations is None else {"atrium": {"citations": chat.citations}}


def usage(result: Result) -> dict[str, int]:
    prompt, completion = result.usage.input_tokens, result.usage.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(chat: PreparedChat, result: Result) -> str:
    cap = chat.output_caps.get(result.model)
    return "length" if cap and result.usage.output_tokens >= cap else "stop"


def chunk(chat: PreparedChat, delta: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A `chat.completion.chunk` with one choice. Chunks name the requested model until the
    last one, which names the model that answered (known only once it has)."""
    body = {
        **_envelope(chat, "chat.completion.chunk", extra.pop("model", chat.model)),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    if chat.include_usage:
        body["usage"] = None
    body["choices"][0].update(extra)
    return body


def last_chunks(chat: PreparedChat, result: Result) -> list[dict[str, Any]]:
    """The chunk with the finish reason (and the citations), then the usage chunk if asked."""
    last = {
        **chunk(chat, {}, model=result.model, finish_reason=finish_reason(chat, result)),
        **_atrium(chat),
    }
    chunks = [last]
    if chat.include_usage:
        chunks.append(
            {
                **_envelope(chat, "chat.completion.chunk", result.model),
                "choices": [],
                "usage": usage(result),
            }
        )
    return chunks
