"""Generating an answer in a worker, decoupled from any socket: each delta is appended to the
answer's Redis stream (ai.conversations.live) for the pages to relay, the stop flag is watched
while the provider streams, and the message is stored at the end: complete, incomplete (cut
off), cancelled (stopped, with what was generated, metered) or failed (with the reason)."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

import redis.asyncio as redis_async
from asgiref.sync import sync_to_async
from django_tenants.utils import tenant_context

from ai.conversations import live
from ai.conversations.services import (
    AnswerCall,
    AnswerOrder,
    answer_call,
    answer_failed,
    answer_finish,
    answer_store,
)
from ai.gateway import Delta, GatewayError, stream
from ai.models import Message
from saas.lib.redis import async_client
from tenants.models import Tenant

# How often a running answer looks at its stop flag (also while the provider is silent).
STOP_CHECK_S = 0.2
LOST_ANSWER = "This answer was lost before it was generated. Please send your message again."


def end_event(answer: Message) -> dict[str, Any]:
    """The last event of an answer: its final state, as stored, and the chat page's rendering
    of it (sanitised markdown, citations, status) to replace the streamed text with."""
    from django.template.loader import render_to_string

    return {
        "html": render_to_string("ai/_message.html", {"message": answer}),
        "type": "end",
        "message_id": str(answer.public_id),
        "status": answer.status,
        "content": answer.content,
        "error": answer.error,
        "model": answer.model,
        "model_label": answer.model_label,
        "citations": answer.citations,
    }


async def answer_generate(*, tenant: Tenant, order: AnswerOrder, fresh: bool = False) -> None:
    """Generate the answer of `order` (in `tenant`'s schema) unless it is finished already (a
    duplicate run). A run that finds part of the answer streamed already (its runner died)
    keeps that part, marked incomplete, rather than answering twice. `fresh`: the caller knows
    this is the order's first run, moments after its send, so the answer is still as the send
    stored it and is not read again (every answer would wait ~2 ms for that read)."""
    if fresh:
        answer, client = order.stored_answer(), async_client()
        key = live.stream_key(tenant.schema_name, str(answer.public_id))
    else:
        unstarted = await _unstarted_answer(tenant, order.message_id)
        if unstarted is None:
            return
        answer, client, key = unstarted
    try:
        call = await _answer_call(tenant, answer, order)
        seq, result = await _stream_until_done_or_stopped(client, tenant, answer, call, key)
    except GatewayError as error:
        await sync_to_async(answer_failed)(tenant, answer, error.message)
        await live.append(client, key, await live.length(client, key) + 1, end_event(answer))
        return
    except asyncio.CancelledError:
        # The run's time ran out (or its runner stops): the answer ends incomplete with what
        # was shown, rather than staying "generating" and the conversation blocked.
        await _end_interrupted(client, tenant, answer, key)
        raise
    if result is None:  # stopped before the gateway produced a result
        await sync_to_async(_interrupted)(tenant, answer, "", status=Message.Status.CANCELLED)
    else:
        answer = await sync_to_async(answer_finish)(tenant, answer, result, call.citations)
    await live.append(client, key, seq + 1, end_event(answer))


async def _answer_call(tenant: Tenant, answer: Message, order: AnswerOrder) -> AnswerCall:
    """The answer's gateway call. Built right here unless passages are needed: that touches
    no database, and a thread hop costs ~0.5 ms of the time to the first token."""
    build = partial(
        answer_call, tenant, answer, messages=order.messages,
        knowledge_base=order.knowledge_base, user_id=order.user_id,
    )  # fmt: skip
    if not order.knowledge_base:
        return build()
    return await sync_to_async(build)()


async def _unstarted_answer(
    tenant: Tenant, message_id: int
) -> tuple[Message, redis_async.Redis, str] | None:
    """The answer `message_id` with its Redis client and stream key, if it is generating and
    nothing was streamed yet. One whose stream has entries (a run of it died, or its run was
    lost mid-way) is ended incomplete with exactly them; a finished one is left alone."""
    answer = await sync_to_async(_generating)(tenant, message_id)
    if answer is None:
        return None
    client = async_client()
    key = live.stream_key(tenant.schema_name, str(answer.public_id))
    if await live.length(client, key):
        await _end_interrupted(client, tenant, answer, key)
        return None
    return answer, client, key


async def _end_interrupted(client, tenant: Tenant, answer: Message, key: str) -> None:
    """End the answer incomplete with exactly the text its stream showed, and an `end` event."""
    shown = await live.entries_after(client, key, 0)
    await sync_to_async(_interrupted)(tenant, answer, live.text_of(shown))
    await live.append(client, key, len(shown) + 1, end_event(answer))


async def _stream_until_done_or_stopped(client, tenant: Tenant, answer: Message, call, key: str):
    gateway_stream = stream(**call.gateway_kwargs)
    seq = 0

    async def relay() -> None:
        nonlocal seq
        async with gateway_stream as items:
            async for item in items:
                if isinstance(item, Delta) and item.text:
                    seq += 1
                    event = {"type": "delta", "text": item.text}
                    write = asyncio.ensure_future(live.append(client, key, seq, event))
                    try:
                        await asyncio.shield(write)
                    except asyncio.CancelledError:
                        # Stopped mid-append: the entry is written in full before the run
                        # ends the stream, so its end follows it and what is stored is what
                        # the page was shown.
                        await write
                        raise

    task = asyncio.ensure_future(relay())
    stop = live.stop_key(tenant.schema_name, str(answer.public_id))
    stopped = False
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=STOP_CHECK_S)
            if not task.done() and await client.exists(stop):
                task.cancel()  # closes the provider call; the gateway meters what was generated
                stopped = True
                break
    except asyncio.CancelledError:  # this run is cancelled: the provider call ends with it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    try:
        await task
    except asyncio.CancelledError:
        if not stopped:
            raise
    return seq, gateway_stream.result


def _generating(tenant: Tenant, message_id: int) -> Message | None:
    with tenant_context(tenant):
        return Message.objects.filter(pk=message_id, status=Message.Status.GENERATING).first()


def _interrupted(
    tenant: Tenant, answer: Message, text: str, *, status: str = Message.Status.INCOMPLETE
) -> None:
    answer.content, answer.status = text, status
    answer_store(tenant, answer, ["content", "status"])


async def answer_end_lost(*, tenant: Tenant, message_id: int) -> None:
    """End an answer no task is generating any more (its task was lost) so its conversation
    takes messages again: incomplete with what its stream showed, or failed if nothing was."""
    unstarted = await _unstarted_answer(tenant, message_id)
    if unstarted is None:
        return
    answer, client, key = unstarted
    await sync_to_async(answer_failed)(tenant, answer, LOST_ANSWER)
    await live.append(client, key, 1, end_event(answer))


async def answer_stop(*, tenant: Tenant, message: Message) -> None:
    """Ask the runner generating `message` to stop (it keeps and meters what was generated)."""
    key = live.stop_key(tenant.schema_name, str(message.public_id))
    await async_client().set(key, "1", ex=live.STREAM_TTL_S)
