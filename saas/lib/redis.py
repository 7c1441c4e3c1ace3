"""The project's Redis clients (REDIS_URL): one sync client per process, one async client per
event loop (redis.asyncio connections belong to the loop that opened them)."""

from __future__ import annotations

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as redis_async
from django.conf import settings

ASYNC_MAX_CONNECTIONS = 5000
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis]
_async_clients = weakref.WeakKeyDictionary()


@cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def async_client() -> redis_async.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # Far above redis-py's default of 100: each open chat socket's relay holds a connection
        # in a blocking read, and the 101st would fail (Redis itself allows 10,000 clients).
        client = redis_async.Redis.from_url(
            settings.REDIS_URL, max_connections=ASYNC_MAX_CONNECTIONS
        )
        _async_clients[loop] = client
    return client
