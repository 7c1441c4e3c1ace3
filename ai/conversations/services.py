"""Writes for conversations: start one, reply in it (one gateway call, history trimmed to a
token budget, optionally grounded in the knowledge base with citations), delete it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_tenants.utils import tenant_context

from ai.gateway import Caller, GatewayError, Prompt, Result, complete_sync
from ai.gateway.tokens import estimate_tokens
from ai.models import Conversation, Message
from saas.lib.tasks import enqueue_for
from tenants.models import APIKey, Tenant, User

MAX_MESSAGE_CHARS = 32_000
TITLE_CHARS = 80


@dataclass
class Exchange:
    question: Message
    answer: Message


class ConversationBusy(Exception):
    """An answer is still being generated in this conversation."""


def conversation_start(
    *,
    tenant: Tenant,
    title: str = "",
    knowledge_base: bool = False,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> Conversation:
    with tenant_context(tenant):
        return Conversation.objects.create(
            title=title.strip()[:200], knowledge_base=knowledge_base,
            user_id=user.pk if user else None, api_key_id=api_key.pk if api_key else None,
        )  # fmt: skip


def conversation_delete(*, tenant: Tenant, conversation: Conversation) -> None:
    with tenant_context(tenant):
        conversation.delete()  # its messages go with it


def conversation_reply(
    *,
    tenant: Tenant,
    conversation: Conversation,
    content: str,
    request_id: str | None = None,
    model: str | None = None,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> Exchange:
    """Add the user's message and generate the answer (one gateway call under `request_id`,
    so a retry with the same id is metered once). Returns the exchange; the answer is complete
    or incomplete (cut off). Raises ValidationError for unusable content, ConversationBusy
    while another answer is being generated here, and GatewayError when the call fails (the
    answer is then kept as failed, with the reason)."""
    content = content.strip()
    _check(content)
    question, answer = _begin(tenant, conversation, content, request_id)
    call = answer_call(
        tenant, conversation, answer, user_id=user.pk if user else None, api_key=api_key,
        model=model,
    )  # fmt: skip
    try:
        result = complete_sync(**call.gateway_kwargs)
    except GatewayError as error:
        answer_failed(tenant, answer, error.message)
        raise
    return Exchange(question, answer_finish(tenant, answer, result, call.citations))


def conversation_send(
    *, tenant: Tenant, conversation: Conversation, content: str, user: User
) -> Exchange:
    """The chat page's send: store the question and a generating answer, and queue the answer
    for a worker (ai.conversations.generation), which streams it to the page. Raises like
    `conversation_reply` before anything is queued."""
    from ai.conversations.tasks import answer_generate_task

    content = content.strip()
    _check(content)
    question, answer = _begin(tenant, conversation, content, None)
    transaction.on_commit(
        lambda: enqueue_for(tenant, answer_generate_task, message_id=answer.pk, user_id=user.pk)
    )
    return Exchange(question, answer)


@dataclass
class AnswerCall:
    """What the gateway gets for an answer, and the sources it may cite."""

    gateway_kwargs: dict
    citations: list[dict]


def answer_call(
    tenant: Tenant,
    conversation: Conversation,
    answer: Message,
    *,
    user_id: int | None = None,
    api_key: APIKey | None = None,
    model: str | None = None,
) -> AnswerCall:
    """The call that answers the conversation's last question (its history trimmed to the
    budget; for a knowledge-base conversation the question's passages as quoted data)."""
    messages = history(tenant, conversation)
    feature, prompt, context, citations = "chat", Prompt("chat"), [], []
    if conversation.knowledge_base:
        feature, prompt = "answer", Prompt("answer")
        context, citations = _grounding(tenant, messages[-1]["content"], user_id, api_key)
    prompt.variables = {"organization": tenant.name}
    caller = Caller(
        tenant, feature, answer.request_id,
        user_id=user_id, api_key_id=api_key.pk if api_key else None,
    )  # fmt: skip
    kwargs = {"caller": caller, "messages": messages, "prompt": prompt, "context": context}
    if model:
        kwargs["model"] = model
    return AnswerCall(kwargs, citations)


def _check(content: str) -> None:
    if not content:
        raise ValidationError("Write a message first.")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ValidationError(f"A message is at most {MAX_MESSAGE_CHARS} characters.")


def history(tenant: Tenant, conversation: Conversation) -> list[dict[str, str]]:
    """The conversation for the model, newest last, trimmed to AI_HISTORY_TOKENS (the oldest
    turns go first; the question being answered always stays). Failed and empty answers are
    left out: the model should not continue from them."""
    with tenant_context(tenant):
        rows = list(
            conversation.messages.exclude(status__in=[Message.Status.GENERATING])
            .exclude(content="")
            .order_by("-created_at", "-id")
            .values_list("role", "content")
        )
    kept: list[dict[str, str]] = []
    budget = settings.AI_HISTORY_TOKENS
    for role, text in rows:
        cost = estimate_tokens(text)
        if kept and cost > budget:
            break
        kept.append({"role": role, "content": text})
        budget -= cost
    kept.reverse()
    while kept and kept[0]["role"] != Message.Role.USER:  # a turn starts with the user
        kept.pop(0)
    return kept


def _begin(
    tenant: Tenant, conversation: Conversation, content: str, request_id: str | None
) -> tuple[Message, Message]:
    """Store the user's message and an empty assistant message that marks the generation."""
    with tenant_context(tenant):
        try:
            with transaction.atomic():
                question = Message.objects.create(
                    conversation=conversation, role=Message.Role.USER, content=content
                )
                answer = Message.objects.create(
                    conversation=conversation, role=Message.Role.ASSISTANT,
                    status=Message.Status.GENERATING,
                    request_id=request_id or f"chat:{uuid.uuid4().hex}",
                )  # fmt: skip
                if not conversation.title:
                    conversation.title = content[:TITLE_CHARS]
                conversation.save(update_fields=["title", "updated_at"])
        except IntegrityError:  # the one-generation-per-conversation constraint
            raise ConversationBusy(
                "An answer is still being generated in this conversation. Wait for it or "
                "stop it first."
            ) from None
    return question, answer


def _grounding(tenant: Tenant, question: str, user_id: int | None, api_key: APIKey | None):
    from retrieval.answering import context_docs
    from retrieval.selectors import knowledge_search

    hits = knowledge_search(
        tenant=tenant, query=question,
        user_id=user_id, api_key_id=api_key.pk if api_key else None,
    )  # fmt: skip
    citations = [
        {
            "index": number,
            "document_id": str(hit.document_public_id),
            "title": hit.title,
            "page": hit.page,
            "chunk_index": hit.index,
        }
        for number, hit in enumerate(hits, start=1)
    ]
    return context_docs(hits), citations


def answer_finish(
    tenant: Tenant, answer: Message, result: Result, citations: list[dict]
) -> Message:
    """Store what the gateway answered (complete, cut off, or stopped) with its metering."""
    from retrieval.answering import cited_numbers

    cited = set(cited_numbers(result.text, len(citations)))
    answer.content = result.text
    answer.status = {
        "ok": Message.Status.COMPLETE, "cancelled": Message.Status.CANCELLED,
    }.get(result.outcome, Message.Status.INCOMPLETE)  # fmt: skip
    answer.model, answer.model_label = result.model, result.label
    answer.prompt_version = result.prompt_version
    answer.input_tokens, answer.output_tokens = (
        result.usage.input_tokens,
        result.usage.output_tokens,
    )
    answer.cost_micros, answer.latency_ms, answer.ttft_ms = (
        result.cost_micros, result.latency_ms, result.ttft_ms,
    )  # fmt: skip
    answer.citations = [c for c in citations if c["index"] in cited]
    with tenant_context(tenant):
        answer.save()
    return answer


def answer_failed(tenant: Tenant, answer: Message, reason: str) -> None:
    answer.status, answer.error = Message.Status.FAILED, reason[:300]
    with tenant_context(tenant):
        answer.save(update_fields=["status", "error"])
