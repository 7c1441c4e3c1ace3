"""`stream: true`: the answer as OpenAI's server-sent events.

    data: {chat.completion.chunk, delta {"role": "assistant", "content": ""}}
    data: {chat.completion.chunk, delta {"content": "..."}}        (one per gateway delta)
    data: {chat.completion.chunk, delta {}, finish_reason, atrium?}
    data: {chat.completion.chunk, choices [], usage}                (stream_options.include_usage)
    data: [DONE]

`[DONE]` only ends an answer that really completed. A stream that breaks (provider cut, key
revoked while streaming, an unexpected failure) ends with `data: {"error": {...}}` and no
[DONE], so OpenAI SDKs raise instead of returning a truncated answer as complete (they stop
quietly at the end of a response without [DONE]).

The first gateway item is awaited before the response starts, so a refusal or an outage
before any text (model not allowed, input rejected, no provider answering) is a plain HTTP
error with the right status rather than a 200 stream. While streaming, the API key is looked
up again every KEY_RECHECK_S (also when no text is arriving): a revoked, expired or suspended
key ends the stream. Ending it early closes the gateway stream, which meters what was
generated as cancelled.

Under ASGI (daphne) the events come from an async generator on the server's event loop. Under
WSGI (runserver, the test server) an async iterator would be buffered whole by Django, so the
stream runs on an event loop in a thread of its own and the response iterates a queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.db.models import Q
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from ai.gateway import Delta, Done, GatewayError
from ai.gateway.types import StreamItem
from ai.openai_compat.chat import PreparedChat, chat_stream_items, chunk, last_chunks
from ai.openai_compat.errors import openai_error
from tenants.models import APIKey, Tenant

logger = logging.getLogger(__name__)

KEY_RECHECK_S = 1.0
DONE = b"data: [DONE]\n\n"
INCOMPLETE = openai_error(
    "The answer broke off before it was complete; the text sent is partial. Try again.",
    status=502, code="stream_incomplete",
)  # fmt: skip
KEY_REVOKED = openai_error(
    "The API key was revoked or expired while the answer was streaming.",
    status=401, code="invalid_api_key",
)  # fmt: skip
FAILED = openai_error(
    "The answer failed while streaming. Try again.", status=500, code="stream_failed"
)


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def api_key_usable(*, key_pk: int) -> bool:
    """Whether the key would still authenticate (not revoked or expired, tenant active): one
    indexed lookup, made about once a second per open stream."""
    return (
        APIKey.objects.filter(
            pk=key_pk, revoked_at__isnull=True, tenant__status=Tenant.Status.ACTIVE
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .exists()
    )


class ChatStream:
    """One streamed completion: `open()` (up to the first gateway item), then `events()`."""

    def __init__(self, chat: PreparedChat) -> None:
        self.chat = chat
        self._items: AsyncIterator[StreamItem] = chat_stream_items(chat)
        self._first: StreamItem | None = None

    async def open(self) -> None:
        """Raises GatewayError when the call is refused or fails before any text."""
        try:
            self._first = await anext(self._items)
        except StopAsyncIteration:
            raise GatewayError("No answer came.") from None
        except BaseException:
            await self._items.aclose()  # type: ignore[attr-defined]
            raise

    async def events(self) -> AsyncIterator[bytes]:
        try:
            yield event(chunk(self.chat, {"role": "assistant", "content": ""}))
            item = self._first
            while not isinstance(item, Done):
                if isinstance(item, Delta) and item.text:
                    yield event(chunk(self.chat, {"content": item.text}))
                item = await anext(self._items)
            if not item.result.complete:
                yield event({"error": INCOMPLETE})
                return
            for last in last_chunks(self.chat, item.result):
                yield event(last)
            yield DONE
        except GatewayError as error:
            yield event({"error": openai_error(error.message, status=502, code=error.code)})
        except Exception:
            logger.exception("chat completion stream failed")
            yield event({"error": FAILED})
        finally:
            await self._items.aclose()  # type: ignore[attr-defined]


def event_stream_response(request: HttpRequest, chat: PreparedChat) -> StreamingHttpResponse:
    """The SSE response, started once the first item is there (raises GatewayError before)."""
    key_pk = chat.caller.api_key_id
    assert key_pk is not None
    chat_stream = ChatStream(chat)
    if isinstance(request, ASGIRequest):
        async_to_sync(chat_stream.open)()
        content: Any = _async_events(chat_stream, key_pk)
    else:
        content = _threaded_events(chat_stream, key_pk)
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


# --- ASGI ------------------------------------------------------------------------------------


async def _next_or_none(events: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


async def _async_events(chat_stream: ChatStream, key_pk: int) -> AsyncIterator[bytes]:
    events = chat_stream.events()
    pending: asyncio.Task[bytes | None] | None = None
    check_at = time.monotonic() + KEY_RECHECK_S
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next_or_none(events))
            done, _ = await asyncio.wait({pending}, timeout=max(0, check_at - time.monotonic()))
            if time.monotonic() >= check_at:
                check_at = time.monotonic() + KEY_RECHECK_S
                if not await sync_to_async(api_key_usable)(key_pk=key_pk):
                    yield event({"error": KEY_REVOKED})
                    return
            if done:
                data, pending = pending.result(), None
                if data is None:
                    return
                yield data
    finally:
        # Left early (key revoked, client gone): stop the gateway stream now.
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):  # cancelled on purpose
                await pending
        await events.aclose()  # type: ignore[attr-defined]


# --- WSGI ------------------------------------------------------------------------------------

_OPENED, _END = object(), object()


class _StreamThread(threading.Thread):
    """Runs a ChatStream on an event loop of its own (async_to_sync: its sync calls, such as
    catalog reads, run on this thread, whose database connections are closed at the end)."""

    def __init__(self, chat_stream: ChatStream) -> None:
        super().__init__(name="chat-completion-stream", daemon=True)
        self.chat_stream = chat_stream
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def run(self) -> None:
        try:
            async_to_sync(self._pump)()
        except BaseException:  # noqa: S110 (cancelled: the reader has left)
            pass
        finally:
            connections.close_all()
            self.out.put(_END)

    async def _pump(self) -> None:
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            await self.chat_stream.open()
        except BaseException as error:
            self.out.put(error)
            return
        self.out.put(_OPENED)
        async for data in self.chat_stream.events():
            self.out.put(data)

    def cancel(self) -> None:
        if self.loop is not None and self.task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has finished already
                self.loop.call_soon_threadsafe(self.task.cancel)


def _threaded_events(chat_stream: ChatStream, key_pk: int) -> Iterator[bytes]:
    thread = _StreamThread(chat_stream)
    thread.start()
    first = thread.out.get()
    if first is not _OPENED:
        thread.join()
        raise first if isinstance(first, BaseException) else GatewayError("No answer came.")
    return _read_events(thread, key_pk)


def _read_events(thread: _StreamThread, key_pk: int) -> Iterator[bytes]:
    check_at = time.monotonic() + KEY_RECHECK_S
    try:
        while True:
            try:
                data = thread.out.get(timeout=max(0, check_at - time.monotonic()))
            except queue.Empty:
                data = None
            if time.monotonic() >= check_at:
                check_at = time.monotonic() + KEY_RECHECK_S
                if not api_key_usable(key_pk=key_pk):
                    yield event({"error": KEY_REVOKED})
                    return
            if data is _END:
                return
            if data is not None:
                yield data
    finally:
        thread.cancel()  # a no-op once the stream has ended
        thread.join(timeout=10)
