"""Circuit breakers per provider+model (per tenant for BYOK keys), shared by all processes
through Redis.

closed: calls flow; failures are counted in a sliding window (a counter with a TTL).
open: after AI_BREAKER_FAILURES failures, calls are refused for AI_BREAKER_COOLDOWN_S.
half-open: when the cooldown ends, exactly one caller (SET NX) gets through as a probe; its
success closes the breaker, its failure opens it again. Only retriable failures count (a bad
request or a bad key says nothing about the provider's health)."""

from __future__ import annotations

import time

from django.conf import settings

from saas.lib.redis import async_client

PREFIX = "atrium:ai:breaker:"
PROBE_TTL_S = 30
# A breaker seen closed is trusted for this long without asking Redis again; one opened by
# another process is noticed within it. Failures seen here reset it at once.
CLOSED_TRUST_S = 0.25
_seen_closed: dict[str, float] = {}


def _keys(name: str) -> tuple[str, str, str, str]:
    base = PREFIX + name
    return f"{base}:fails", f"{base}:open", f"{base}:half", f"{base}:probe"


async def breaker_allow(name: str) -> tuple[bool, bool]:
    """(allowed, is_probe) for a call through breaker `name`."""
    if time.monotonic() - _seen_closed.get(name, -CLOSED_TRUST_S) < CLOSED_TRUST_S:
        return True, False
    _, open_key, half_key, probe_key = _keys(name)
    client = async_client()
    is_open, is_half = await client.mget(open_key, half_key)
    if not is_open and not is_half:
        _seen_closed[name] = time.monotonic()
        return True, False
    _seen_closed.pop(name, None)
    if is_open:
        return False, False
    acquired = await client.set(probe_key, 1, nx=True, ex=PROBE_TTL_S)
    return bool(acquired), bool(acquired)


async def breaker_success(name: str, *, probe: bool) -> None:
    fails_key, _, half_key, probe_key = _keys(name)
    if probe:
        await async_client().delete(fails_key, half_key, probe_key)


async def breaker_failure(name: str, *, probe: bool) -> bool:
    """Count a failure; returns True when this failure opened the breaker."""
    _seen_closed.pop(name, None)
    fails_key, open_key, half_key, probe_key = _keys(name)
    client = async_client()
    async with client.pipeline(transaction=True) as pipe:
        pipe.incr(fails_key)
        pipe.expire(fails_key, settings.AI_BREAKER_WINDOW_S, nx=True)
        failures, _ = await pipe.execute()
    if probe or failures >= settings.AI_BREAKER_FAILURES:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(open_key, 1, ex=settings.AI_BREAKER_COOLDOWN_S)
            pipe.set(half_key, 1)
            pipe.delete(fails_key, probe_key)
            await pipe.execute()
        return True
    return False


async def breaker_state(name: str) -> str:
    _, open_key, half_key, _ = _keys(name)
    is_open, is_half = await async_client().mget(open_key, half_key)
    if is_open:
        return "open"
    return "half_open" if is_half else "closed"
