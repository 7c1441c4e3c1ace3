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
# breakers_refresh looks again at the breakers used here within this long.
REFRESH_USED_WITHIN_S = 600.0
_seen_closed: dict[str, float] = {}
_last_used: dict[str, float] = {}
_failures_counted = 0  # in this process: a refresh that raced one does not apply


def _keys(name: str) -> tuple[str, str, str, str]:
    base = PREFIX + name
    return f"{base}:fails", f"{base}:open", f"{base}:half", f"{base}:probe"


async def breaker_allow(name: str) -> tuple[bool, bool]:
    """(allowed, is_probe) for a call through breaker `name`."""
    _last_used[name] = time.monotonic()
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
    global _failures_counted
    _failures_counted += 1
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


async def breakers_refresh() -> None:
    """Read the state of every breaker used here lately, in one round trip, so that the next
    call through each trusts a state seen just now instead of reading it on its way to the
    provider. Called every CLOSED_TRUST_S / 2 or so by long-running processes."""
    now = time.monotonic()
    for name, used in list(_last_used.items()):
        if now - used > REFRESH_USED_WITHIN_S:
            del _last_used[name]
    names = list(_last_used)
    if not names:
        return
    failures_before = _failures_counted
    states = await async_client().mget([key for n in names for key in _keys(n)[1:3]])
    if _failures_counted != failures_before:
        return  # a breaker may have opened while the read was out: trust nothing from it
    seen = time.monotonic()
    for index, name in enumerate(names):
        if states[2 * index] or states[2 * index + 1]:  # open or half-open
            _seen_closed.pop(name, None)
        else:
            _seen_closed[name] = seen
