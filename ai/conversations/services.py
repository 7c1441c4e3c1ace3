"""Writes for conversations: start one, reply in it (one gateway call, history trimmed to a
token budget, optionally grounded in the knowledge base with citations), delete it."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from psycopg.sql import Identifier

from ai.gateway import Caller, GatewayError, Prompt, Result, complete_sync
from ai.gateway.tokens import estimate_tokens, tokens_at_most
from ai.models import Conversation, Message
from tenants.models import APIKey, Tenant, User

MAX_MESSAGE_CHARS = 32_000
FOREIGN_KEY_VIOLATION = "23503"
TITLE_CHARS = 80


@dataclass
class Exchange:
    question: Message
    answer: Message
    # The conversation for the model, the new question last, trimmed to the token budget.
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class AnswerOrder:
    """What a runner is given to generate an answer: the answer's row as the send stored it
    (the columns a new answer does not leave at their defaults), the call's history as read
    with the question, whether the knowledge base grounds it and who asked. Travels as JSON."""

    message_id: int
    public_id: str
    conversation_id: int
    request_id: str
    created_at: str  # ISO 8601
    knowledge_base: bool
    user_id: int | None
    messages: list[dict[str, str]]

    @classmethod
    def of(cls, exchange: Exchange, conversation: Conversation, user_id: int | None) -> AnswerOrder:
        answer = exchange.answer
        return cls(
            message_id=answer.pk, public_id=str(answer.public_id),
            conversation_id=conversation.pk, request_id=answer.request_id,
            created_at=answer.created_at.isoformat(), knowledge_base=conversation.knowledge_base,
            user_id=user_id, messages=exchange.messages,
        )  # fmt: skip

    @classmethod
    def from_fields(cls, fields: dict) -> AnswerOrder:
        """The order of `fields` (as `fields()` made them); TypeError or ValueError when they
        are not one."""
        order = cls(**fields)
        if not isinstance(order.message_id, int) or not isinstance(order.messages, list):
            raise TypeError("not an answer order")
        datetime.fromisoformat(order.created_at)
        return order

    def fields(self) -> dict:
        return asdict(self)

    def stored_answer(self) -> Message:
        """The answer as the send stored it: generating, nothing generated yet."""
        answer = Message(
            id=self.message_id, public_id=uuid.UUID(self.public_id),
            conversation_id=self.conversation_id, role=Message.Role.ASSISTANT,
            status=Message.Status.GENERATING, request_id=self.request_id,
            created_at=datetime.fromisoformat(self.created_at),
        )  # fmt: skip
        answer._state.adding = False
        return answer


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
    exchange = _begin(tenant, conversation, content, request_id)
    call = answer_call(
        tenant, exchange.answer, messages=exchange.messages,
        knowledge_base=conversation.knowledge_base, user_id=user.pk if user else None,
        api_key=api_key, model=model,
    )  # fmt: skip
    try:
        result = complete_sync(**call.gateway_kwargs)
    except GatewayError as error:
        answer_failed(tenant, exchange.answer, error.message)
        raise
    exchange.answer = answer_finish(tenant, exchange.answer, result, call.citations)
    return exchange


def conversation_send(
    *, tenant: Tenant, conversation: Conversation, content: str, user: User
) -> Exchange:
    """The chat page's send: store the question and a generating answer, and queue the answer
    for a runner (ai.conversations.runner), which streams it to the page. Raises like
    `conversation_reply` before anything is queued."""
    from ai.conversations.runner import answer_enqueue

    content = content.strip()
    _check(content)
    exchange = _begin(tenant, conversation, content, None)
    order = AnswerOrder.of(exchange, conversation, user.pk)
    transaction.on_commit(lambda: answer_enqueue(tenant, order))
    return exchange


@dataclass
class AnswerCall:
    """What the gateway gets for an answer, and the sources it may cite."""

    gateway_kwargs: dict
    citations: list[dict]


def answer_call(
    tenant: Tenant,
    answer: Message,
    *,
    messages: list[dict[str, str]],
    knowledge_base: bool,
    user_id: int | None = None,
    api_key: APIKey | None = None,
    model: str | None = None,
) -> AnswerCall:
    """The call that answers the last question of `messages` (the conversation, trimmed to
    the budget); grounded in the knowledge base, the question's passages as quoted data."""
    feature, prompt, context, citations = "chat", Prompt("chat"), [], []
    if knowledge_base:
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
    return _trimmed(rows)


def _trimmed(rows: list[tuple[str, str]]) -> list[dict[str, str]]:
    """(role, content) rows, newest first, as the model's messages within the budget."""
    budget = settings.AI_HISTORY_TOKENS
    if tokens_at_most(text for _, text in rows) <= budget:  # all of it fits: no counting
        kept = [{"role": role, "content": text} for role, text in rows]
    else:
        kept = []
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


# Every send waits on this statement before its answer can start, so it is one round trip
# written out: the ORM's Python cost per query (~1 ms on a small server) was most of the time
# to the first token. It stores the question and an empty generating answer (the marker the
# one-generation-per-conversation constraint holds on), touches the conversation, and reads
# the history as it was before (a statement does not see its own inserts). Columns missing
# here fail every chat test, so a new Message field cannot be forgotten silently.
_BEGIN_SQL = """
WITH added AS (
    INSERT INTO {message} (public_id, conversation_id, role, content, status, error, request_id,
        model, model_label, prompt_version, input_tokens, output_tokens, cost_micros, latency_ms,
        ttft_ms, citations, created_at)
    VALUES
        (%(question)s, %(conversation)s, %(user)s, %(content)s, %(complete)s, '', '', '', '', '',
         0, 0, 0, NULL, NULL, '[]', %(now)s),
        (%(answer)s, %(conversation)s, %(assistant)s, '', %(generating)s, '', %(request_id)s, '',
         '', '', 0, 0, 0, NULL, NULL, '[]', %(now)s)
    RETURNING id, role
), touched AS (
    UPDATE {conversation_table} SET title = %(title)s, updated_at = %(now)s
    WHERE id = %(conversation)s
)
SELECT
    (SELECT id FROM added WHERE role = %(user)s),
    (SELECT id FROM added WHERE role = %(assistant)s),
    (SELECT coalesce(json_agg(json_build_array(role, content) ORDER BY created_at DESC, id DESC),
                     '[]')
     FROM {message} WHERE conversation_id = %(conversation)s AND status <> %(generating)s
                          AND content <> '')
"""


def _begin(
    tenant: Tenant, conversation: Conversation, content: str, request_id: str | None
) -> Exchange:
    """Store the user's message and an empty assistant message that marks the generation."""
    now = timezone.now()
    question = Message(
        public_id=uuid.uuid4(), conversation=conversation, role=Message.Role.USER,
        content=content, created_at=now,
    )  # fmt: skip
    answer = Message(
        public_id=uuid.uuid4(), conversation=conversation, role=Message.Role.ASSISTANT,
        status=Message.Status.GENERATING, request_id=request_id or f"chat:{uuid.uuid4().hex}",
        created_at=now,
    )  # fmt: skip
    title = conversation.title or content[:TITLE_CHARS]
    sql = _BEGIN_SQL.format(
        message=_table(tenant, Message), conversation_table=_table(tenant, Conversation)
    )
    parameters = {
        "question": question.public_id, "answer": answer.public_id,
        "conversation": conversation.pk, "content": content, "request_id": answer.request_id,
        "title": title, "now": now, "user": Message.Role.USER.value,
        "assistant": Message.Role.ASSISTANT.value, "complete": Message.Status.COMPLETE.value,
        "generating": Message.Status.GENERATING.value,
    }  # fmt: skip
    # One statement is a transaction of its own: no BEGIN and COMMIT round trips. Inside a
    # caller's transaction, a savepoint keeps that transaction usable after a refusal.
    own = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with own:
            connection.ensure_connection()
            # The driver's own cursor: Django's would set django-tenants' search_path first, one
            # more round trip, and the statement names its tenant's tables itself.
            with connection.wrap_database_errors, connection.connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                question.pk, answer.pk, earlier = cursor.fetchone()
    except IntegrityError as error:
        cause = error.__cause__
        if getattr(cause, "sqlstate", None) == FOREIGN_KEY_VIOLATION:
            raise ValidationError("This conversation was deleted.") from None
        if getattr(cause.diag, "constraint_name", None) == "one_generation_per_conversation":
            raise ConversationBusy(
                "An answer is still being generated in this conversation. Wait for it or "
                "stop it first."
            ) from None
        raise
    for message in (question, answer):
        message._state.adding = False
    conversation.title, conversation.updated_at = title, now
    rows = [(Message.Role.USER.value, content), *(tuple(row) for row in earlier)]
    return Exchange(question, answer, _trimmed(rows))


def _table(tenant: Tenant, model) -> str:
    """The model's table in the tenant's schema, quoted (for SQL run without its search_path)."""
    return Identifier(tenant.schema_name, model._meta.db_table).as_string()


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
    answer_store(tenant, answer, FINISHED_FIELDS)
    return answer


FINISHED_FIELDS = [
    "content", "status", "model", "model_label", "prompt_version", "input_tokens",
    "output_tokens", "cost_micros", "latency_ms", "ttft_ms", "citations",
]  # fmt: skip


def answer_failed(tenant: Tenant, answer: Message, reason: str) -> None:
    answer.status, answer.error = Message.Status.FAILED, reason[:300]
    answer_store(tenant, answer, ["status", "error"])


def answer_store(tenant: Tenant, answer: Message, fields: list[str]) -> None:
    """Write these fields of the answer. One deleted meanwhile (with its conversation) is
    gone, not an error: its usage is metered by the gateway all the same."""
    with tenant_context(tenant):
        Message.objects.filter(pk=answer.pk).update(**{f: getattr(answer, f) for f in fields})
