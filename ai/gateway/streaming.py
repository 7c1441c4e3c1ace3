"""stream(): answers token by token.

Before the first token a failure falls over to the next attempt or model, unseen by the
caller. After it, nothing is replayed: the stream ends with an `incomplete` result that keeps
and meters the partial text. Stopping early (`aclose()`, leaving `async with`, cancelling the
task) ends the provider call and meters what was generated as `cancelled`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from ai.gateway import metrics
from ai.gateway.attempts import (
    ChainState,
    Deadline,
    attempt_timeout,
    backoff_seconds,
    provider_refusal,
)
from ai.gateway.breaker import breaker_allow, breaker_failure, breaker_success
from ai.gateway.core import (
    CacheStatus,
    Outcome,
    cached_result,
    chat_request,
    finish,
    plan_or_record,
    record_failure,
    remember,
)
from ai.gateway.errors import AllProvidersFailed, GatewayError
from ai.gateway.guardrails import StreamRedactor, redact
from ai.gateway.plan import Plan
from ai.gateway.routing import Target
from ai.gateway.types import Caller, Delta, Done, Prompt, Result, StreamItem
from ai.providers import ADAPTERS
from ai.providers.base import ContextDoc, ProviderError, StreamEnd, Usage


class GatewayStream:
    """Iterate it (`async for item in stream`) for Delta items then one Done. Use it as an
    async context manager, or call aclose(), so an abandoned stream is metered too."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        self._iterator: AsyncIterator[StreamItem] | None = None
        self.result: Result | None = None

    def __aiter__(self) -> GatewayStream:
        return self

    async def __anext__(self) -> StreamItem:
        if self._iterator is None:
            self._iterator = self._run()
        return await self._iterator.__anext__()

    async def __aenter__(self) -> GatewayStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[StreamItem]:
        plan = await plan_or_record(**self._kwargs)
        hit = await cached_result(plan)
        if hit is not None:
            self.result = hit
            yield Delta(hit.text)
            yield Done(hit)
            return
        # Closing this generator must close the inner one at once (it meters a cancelled
        # stream in its `finally`), not whenever the garbage collector gets to it.
        async with contextlib.aclosing(_stream_planned(plan, self)) as items:
            async for item in items:
                yield item


async def _stream_planned(plan: Plan, owner: GatewayStream) -> AsyncIterator[StreamItem]:
    state = ChainState()
    deadline = Deadline(settings.AI_DEADLINE_S)
    redactor = StreamRedactor(plan.canary)
    text: list[str] = []
    target: Target | None = None
    ttft_ms: int | None = None
    usage: Usage | None = None
    outcome = ""  # stays empty while running: leaving early then means cancelled
    error_message = ""
    metered = False
    try:
        for target in plan.targets:
            for attempt in range(settings.AI_MAX_ATTEMPTS_PER_MODEL):
                if deadline.remaining <= 0:
                    break
                allowed, probe = await breaker_allow(target.breaker_key)
                if not allowed:
                    state.errors.append(f"{target.model.key}: circuit open")
                    break
                state.attempts += 1
                events = ADAPTERS[target.model.provider].stream(
                    chat_request(plan, target, attempt_timeout(deadline)), target.credentials
                )
                try:
                    async for event in events:
                        if isinstance(event, StreamEnd):
                            usage = event.usage
                            continue
                        if ttft_ms is None:
                            ttft_ms = int((time.monotonic() - plan.started) * 1000)
                            metrics.TTFT.labels(target.model.provider).observe(ttft_ms / 1000)
                        text.append(event.text)
                        visible = redactor.feed(event.text)
                        if visible:
                            yield Delta(visible)
                    outcome = Outcome.OK
                except ProviderError as error:
                    state.errors.append(f"{target.model.key}: {error.kind}")
                    if error.retriable and await breaker_failure(target.breaker_key, probe=probe):
                        metrics.BREAKER_OPENED.labels(target.model.provider, target.model.key).inc()
                    if ttft_ms is not None:
                        # Tokens were shown: never replay; end as incomplete, keep the text.
                        outcome, error_message = Outcome.INCOMPLETE, error.message
                        break
                    if not error.retriable:
                        raise provider_refusal(error) from None
                    wait = error.retry_after or backoff_seconds(attempt)
                    last_try = attempt + 1 >= settings.AI_MAX_ATTEMPTS_PER_MODEL
                    if last_try or wait >= deadline.remaining:
                        state.retry_after = error.retry_after or state.retry_after
                        break
                    metrics.RETRIES.labels(target.model.provider, error.kind).inc()
                    await asyncio.sleep(wait)
                    continue
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
                await breaker_success(target.breaker_key, probe=probe)
                break
            if outcome:
                break
        if not outcome:
            raise AllProvidersFailed(
                "The AI providers are not answering right now. Please try again shortly.",
                retry_after=state.retry_after or 5.0,
            )
    except AllProvidersFailed as error:
        stale = await cached_result(plan, stale=True)
        metered = True
        if stale is not None:
            owner.result = stale
            yield Delta(stale.text)
            yield Done(stale)
            return
        await record_failure(plan, error, state)
        raise
    except GatewayError as error:
        metered = True
        await record_failure(plan, error, state)
        raise
    finally:
        if not outcome and not metered and target is not None:
            # The consumer left (or its task was cancelled): meter what was generated.
            owner.result = await finish(
                plan, target=target, text="".join(text), usage=None, outcome=Outcome.CANCELLED,
                cache_status=CacheStatus.MISS, state=state, ttft_ms=ttft_ms,
            )  # fmt: skip
    tail = redactor.flush()
    if tail:
        yield Delta(tail)
    for finding in redactor.found:
        plan.flags.append(finding)
        metrics.GUARDRAIL_HITS.labels(finding).inc()
    visible_text, _ = redact("".join(text), plan.canary)
    if outcome == Outcome.OK and not redactor.found:
        await remember(plan, target, visible_text)
    owner.result = await finish(
        plan, target=target, text=visible_text, usage=usage if outcome == Outcome.OK else None,
        outcome=outcome, cache_status=CacheStatus.MISS if plan.fingerprint else CacheStatus.BYPASS,
        state=state, ttft_ms=ttft_ms, error=error_message,
    )  # fmt: skip
    yield Done(owner.result)


def stream(
    *,
    caller: Caller,
    messages: list[dict[str, str]],
    prompt: Prompt | None = None,
    system: str = "",
    context: list[ContextDoc] | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    use_cache: bool = True,
) -> GatewayStream:
    """A streamed answer: Delta items, then one Done whose result says ok / incomplete."""
    return GatewayStream(
        {
            "caller": caller, "messages": messages, "prompt": prompt, "system": system,
            "context": context or [], "model": model, "max_tokens": max_tokens,
            "temperature": temperature, "response_schema": None, "use_cache": use_cache,
        }
    )  # fmt: skip
