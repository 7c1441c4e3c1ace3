"""The provider chain: retries with backoff and Retry-After inside one deadline, circuit
breakers, and failover to the next model. Non-retriable errors fail fast."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from ai.gateway import metrics
from ai.gateway.breaker import breaker_allow, breaker_failure, breaker_success
from ai.gateway.errors import AllProvidersFailed, ProviderRefused, ProviderRejectedRequest
from ai.gateway.routing import Target
from ai.providers.base import ProviderError

logger = logging.getLogger(__name__)


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


@dataclass
class ChainState:
    """What happened along the chain (for the usage record and metrics)."""

    attempts: int = 0
    last_error: ProviderError | None = None
    retry_after: float | None = None
    errors: list[str] = field(default_factory=list)


def backoff_seconds(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)]."""
    ceiling = min(settings.AI_BACKOFF_MAX_MS, settings.AI_BACKOFF_BASE_MS * 2**attempt) / 1000
    return random.uniform(0, ceiling)  # noqa: S311  (jitter, not cryptography)


def attempt_timeout(deadline: Deadline) -> float:
    return max(0.05, min(settings.AI_ATTEMPT_TIMEOUT_S, deadline.remaining))


async def run_chain[T](
    targets: list[Target],
    call: Callable[[Target, float], Awaitable[T]],
    *,
    deadline: Deadline,
    state: ChainState,
) -> tuple[Target, T]:
    """Try each target in order, retrying retriable errors, until one succeeds.

    `call(target, timeout)` performs one attempt. Raises ProviderRefused for a non-retriable
    error, AllProvidersFailed when every target failed or the deadline ran out."""
    for target in targets:
        for attempt in range(settings.AI_MAX_ATTEMPTS_PER_MODEL):
            if deadline.remaining <= 0:
                break
            allowed, probe = await breaker_allow(target.breaker_key)
            if not allowed:
                state.errors.append(f"{target.model.key}: circuit open")
                break
            state.attempts += 1
            try:
                result = await call(target, attempt_timeout(deadline))
            except ProviderError as error:
                state.last_error = error
                state.errors.append(f"{target.model.key}: {error.kind}")
                if not error.retriable:
                    if probe:
                        await breaker_success(target.breaker_key, probe=True)
                    raise provider_refusal(error) from None
                if await breaker_failure(target.breaker_key, probe=probe):
                    metrics.BREAKER_OPENED.labels(target.model.provider, target.model.key).inc()
                wait = _wait_before_retry(error, attempt, deadline, state)
                if wait is None:
                    break  # this model won't answer in time: next one
                metrics.RETRIES.labels(target.model.provider, error.kind).inc()
                await asyncio.sleep(wait)
                continue
            await breaker_success(target.breaker_key, probe=probe)
            return target, result
    logger.warning("all providers failed: %s", "; ".join(state.errors))
    raise AllProvidersFailed(
        "The AI providers are not answering right now. Please try again shortly.",
        retry_after=state.retry_after or 5.0,
    )


def _wait_before_retry(
    error: ProviderError, attempt: int, deadline: Deadline, state: ChainState
) -> float | None:
    """Seconds to wait before retrying the same model, or None to move on to the next one."""
    if attempt + 1 >= settings.AI_MAX_ATTEMPTS_PER_MODEL:
        if error.retry_after:
            state.retry_after = max(state.retry_after or 0, error.retry_after)
        return None
    wait = error.retry_after if error.retry_after is not None else backoff_seconds(attempt)
    if wait >= deadline.remaining:
        state.retry_after = max(state.retry_after or 0, wait)
        return None
    return wait


def provider_refusal(error: ProviderError) -> ProviderRefused:
    """The gateway error for a provider's non-retriable refusal (messages safe to show)."""
    if error.kind == "auth":
        return ProviderRefused(
            "The provider rejected the API key. An administrator should check the key."
        )
    if error.kind == "forbidden":
        return ProviderRefused("The provider refused access to this model.")
    # Adapters never put keys or bodies in the message. A 400, 413 or 422 (or a refusal made
    # without HTTP: no status) is about the request's content; anything else (a 404: the
    # catalog names a model the provider does not have) is the platform's to fix.
    if error.status in (None, 400, 413, 422):
        return ProviderRejectedRequest(error.message)
    return ProviderRefused(error.message)
