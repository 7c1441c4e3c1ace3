"""Counting semaphores in Redis, shared by every process: at most `limit` leases per key at once
(e.g. per tenant schema: "no tenant runs more than N ingestions").

A key is a sorted set of lease tokens scored by their expiry (Redis server time, so the clocks
of the workers do not matter). Admission is one Lua script: drop expired leases, admit if
fewer than `limit` remain, add the token. Leases expire, so a slot held by a killed worker frees
itself after `lease_s`; a holder that lives longer keeps its lease alive from a background
thread while it is entered as a context manager (`with lease:`), and releases it on exit."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from functools import cached_property
from types import TracebackType

import redis
from redis.commands.core import Script

from saas.lib.redis import sync_client

logger = logging.getLogger(__name__)

PREFIX = "atrium:semaphore:"

# The set's own TTL follows its latest lease, so an idle key leaves nothing behind.
_EXPIRE_WITH_LATEST = """
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then redis.call('PEXPIREAT', KEYS[1], latest[2]) end
"""
_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""
# KEYS[1]: the semaphore; ARGV: limit, lease in ms, token. Returns 1 if admitted.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
"""
    + _EXPIRE_WITH_LATEST
    + "return 1"
)
# KEYS[1]: the semaphore; ARGV: lease in ms, token. Returns 0 if the lease is gone.
_RENEW = (
    _NOW_MS
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
"""
    + _EXPIRE_WITH_LATEST
    + "return 1"
)


class Semaphore:
    """The semaphores named `name`, one per key. `lease_s`: how long a lease outlives a holder
    that stopped renewing it (a killed process)."""

    def __init__(self, name: str, *, lease_s: float, client: redis.Redis | None = None) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.name = name
        self.lease_s = lease_s
        self._client = client

    @cached_property
    def client(self) -> redis.Redis:
        return self._client or sync_client()

    # Scripts are sent by SHA and reloaded if the server lost them (restart, SCRIPT FLUSH).
    @cached_property
    def _acquire(self) -> Script:
        return self.client.register_script(_ACQUIRE)

    @cached_property
    def _renew(self) -> Script:
        return self.client.register_script(_RENEW)

    @property
    def _lease_ms(self) -> int:
        return max(1, round(self.lease_s * 1000))

    def redis_key(self, key: str) -> str:
        return f"{PREFIX}{self.name}:{key}"

    def acquire(self, key: str, *, limit: int) -> Lease | None:
        """A lease on one of `key`'s `limit` slots, or None if all are taken. Raises
        redis.RedisError if Redis cannot be reached (the caller decides whether to run
        uncapped or not at all)."""
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        admitted = self._acquire(keys=[self.redis_key(key)], args=[limit, self._lease_ms, token])
        return Lease(self, key, token) if admitted else None


class Lease:
    """One slot of a semaphore, until released or expired. As a context manager it is kept
    alive in the background while the block runs and released when the block ends."""

    def __init__(self, semaphore: Semaphore, key: str, token: str) -> None:
        self.semaphore = semaphore
        self.key = key
        self.token = token
        self._done = threading.Event()
        self._keeper: threading.Thread | None = None

    def renew(self) -> bool:
        """Push the expiry `lease_s` ahead; False if the lease had already expired or gone."""
        semaphore = self.semaphore
        renewed = semaphore._renew(
            keys=[semaphore.redis_key(self.key)], args=[semaphore._lease_ms, self.token]
        )
        return bool(renewed)

    def release(self) -> None:
        """Free the slot. Never raises: if Redis is unreachable, the lease expires by itself."""
        try:
            self.semaphore.client.zrem(self.semaphore.redis_key(self.key), self.token)
        except redis.RedisError as error:
            logger.warning("semaphore %s: release failed: %s", self.semaphore.name, error)

    def _keep_alive(self) -> None:
        interval = self.semaphore.lease_s / 3
        while not self._done.wait(interval):
            try:
                if not self.renew():
                    logger.warning(
                        "semaphore %s: lease for %s expired while held",
                        self.semaphore.name,
                        self.key,
                    )
                    return
            except redis.RedisError as error:  # try again next round, before it expires
                logger.warning("semaphore %s: renewal failed: %s", self.semaphore.name, error)

    def __enter__(self) -> Lease:
        self._keeper = threading.Thread(
            target=self._keep_alive, name=f"lease-{self.semaphore.name}", daemon=True
        )
        self._keeper.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._keeper is not None:
            self._keeper.join()
        self.release()
