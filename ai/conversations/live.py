"""An answer on its way: a Redis stream per answer message that the runner generating it
appends to and any number of sockets read, from the start or from where they left off.

Entry ids are `0-<seq>` with seq = 1, 2, ... in order, so "the last sequence number I saw" is
exactly where a reconnecting page resumes: no gaps, no duplicates. Each entry holds the event
as the page receives it (JSON, seq included) and its type; the last one is an `end` event.
Streams expire STREAM_TTL_S after their first and again after their last entry; a finished
answer is read from the database after that.

Sockets read through one reader per server process (per event loop): a single blocking XREAD
over every stream some socket follows, its entries handed to the followers as they are, never
decoded. One Redis round trip then serves many frames at once, where a read per socket cost
more CPU than the relaying itself and a pooled connection per open socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis_async
from django.conf import settings

from saas.lib.redis import async_client

logger = logging.getLogger(__name__)

STREAM_TTL_S = 3600
# The reader's XREAD blocks at most this long (below the Redis client's socket timeout);
# a follower that got nothing for IDLE_S checks whether its stream is gone.
BLOCK_MS = 2000
IDLE_S = 2.0
READ_COUNT = 500  # entries per stream per read
# A read that returned this soon after it was sent is followed by a pause for the rest of it:
# with many streams live, each read would otherwise carry a single entry, and sending the
# read (two arguments per stream) would cost more than relaying the entry. Reads wait for
# entries far longer than this when few streams are live, and then never pause.
MIN_READ_INTERVAL_S = 0.002


def stream_key(schema: str, message_public_id: str) -> str:
    return f"atrium:answer:{schema}:{message_public_id}"


def stop_key(schema: str, message_public_id: str) -> str:
    return f"atrium:answer-stop:{schema}:{message_public_id}"


@dataclass(frozen=True)
class Entry:
    seq: int
    type: str
    json: str  # the event as the page receives it, seq included


async def append(client: redis_async.Redis, key: str, seq: int, event: dict[str, Any]) -> None:
    entry = {"e": json.dumps({**event, "seq": seq}), "t": event["type"]}
    if seq > 1 and event["type"] != "end":
        # The expiry set with the first entry outlasts any answer (tasks stop within minutes);
        # the end sets it again, for the readers that come later.
        await client.xadd(key, entry, id=f"0-{seq}")
        return
    async with client.pipeline(transaction=False) as pipe:
        pipe.xadd(key, entry, id=f"0-{seq}")
        pipe.expire(key, STREAM_TTL_S)
        await pipe.execute()


async def entries_after(
    client: redis_async.Redis, key: str, seq: int, *, until: int | None = None
) -> list[Entry]:
    """The stream's entries after `seq` (up to `until`), as they are now."""
    last = "+" if until is None else f"0-{until}"
    return [_entry(id_, fields) for id_, fields in await client.xrange(key, f"0-{seq + 1}", last)]


async def length(client: redis_async.Redis, key: str) -> int:
    return await client.xlen(key)


def text_of(entries: list[Entry]) -> str:
    """The answer text the entries showed (their deltas, in order)."""
    return "".join(json.loads(entry.json)["text"] for entry in entries if entry.type == "delta")


def _entry(entry_id: bytes, fields: dict[bytes, bytes] | list[bytes]) -> Entry:
    if isinstance(fields, list):  # the reply as Redis sent it: field, value, field, value
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    raw = fields[b"e"].decode()
    kind = fields[b"t"].decode() if b"t" in fields else json.loads(raw)["type"]
    return Entry(int(entry_id.split(b"-", 1)[1]), kind, raw)


class RelayFailed(Exception):
    """The process's reader could not read from Redis."""


class Follower:
    """One socket's view of an answer stream: every entry after `after`, once and in order.
    The reader may hand over entries this follower has seen (another socket on the same
    stream resumed from further back) or skip some (it joined a stream the reader had read
    past): the first are dropped, the second read back from the stream."""

    def __init__(self, client: redis_async.Redis, key: str, after: int) -> None:
        self.client, self.key = client, key
        self.next_seq = after + 1
        self.read_back_until = after  # entries up to here are read from the stream directly
        self._inbox: list[Entry] = []
        self._arrived = asyncio.Event()
        self._error: BaseException | None = None

    def deliver(self, entries: list[Entry]) -> None:
        self._inbox.extend(entries)
        self._arrived.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._arrived.set()

    async def entries(self, timeout_s: float = IDLE_S) -> list[Entry]:
        """The next entries in order, waiting up to `timeout_s` (none if nothing came)."""
        behind = self.read_back_until >= self.next_seq
        if not behind and not self._inbox and self._error is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
        self._arrived.clear()
        if self._error is not None:
            raise RelayFailed(str(self._error)) from self._error
        ordered: list[Entry] = []
        if behind:
            ordered += self._in_order(await self._read_back(self.read_back_until))
        inbox, self._inbox = self._inbox, []
        for entry in inbox:
            if entry.seq > self.next_seq:  # a gap: the reader read past it before we joined
                ordered += self._in_order(await self._read_back(entry.seq - 1))
            ordered += self._in_order([entry])
        return ordered

    async def _read_back(self, until: int) -> list[Entry]:
        return await entries_after(self.client, self.key, self.next_seq - 1, until=until)

    def _in_order(self, entries: list[Entry]) -> list[Entry]:
        fresh = [entry for entry in entries if entry.seq >= self.next_seq]
        if fresh:
            self.next_seq = fresh[-1].seq + 1
        return fresh

    async def stream_exists(self) -> bool:
        return bool(await self.client.exists(self.key))


class _Reader:
    """The one blocking read of a process (event loop) for all its followers. It wakes when
    a follower joins a stream it does not read yet (an entry on its own wake stream), stops
    when the last follower leaves, and fails every follower when Redis fails (they tell
    their pages; the next follower starts it again)."""

    def __init__(self, client: redis_async.Redis) -> None:
        self.client = client
        # Its own connection for the blocking read, whose replies are taken as Redis sent them:
        # redis-py's reshaping of each XREAD reply cost more than the relaying around it.
        self.reader = redis_async.Redis.from_url(settings.REDIS_URL)
        self.reader.set_response_callback("XREAD", lambda response, **options: response)
        self.wake_key = f"atrium:answer-relay-wake:{uuid.uuid4().hex}"
        self.wake_id: bytes | str = "0-0"
        self.positions: dict[str, bytes | str] = {}  # stream -> last entry id read
        self.followers: dict[str, set[Follower]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, follower: Follower, after: int) -> tuple[int, bool]:
        """Start reading for `follower`; returns the seq the reader has read its stream up to
        and whether the stream is new to the reader (then it must be woken)."""
        group = self.followers.setdefault(follower.key, set())
        new = not group
        if new:
            self.positions[follower.key] = f"0-{after}"
        group.add(follower)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        position = self.positions[follower.key]
        seq = position.split(b"-")[1] if isinstance(position, bytes) else position.split("-")[1]
        return int(seq), new

    def remove(self, follower: Follower) -> None:
        group = self.followers.get(follower.key, set())
        group.discard(follower)
        if not group:
            self.followers.pop(follower.key, None)
            self.positions.pop(follower.key, None)
        if not self.followers and self.task is not None:
            self.task.cancel()  # no one to read for: do not hold a blocked connection
            self.task = None  # a follower joining before it has wound down starts a new one

    async def wake(self) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self.wake_key, STREAM_TTL_S)
            await pipe.execute()

    async def _run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self.followers:
                sent = loop.time()
                found = await self._read({self.wake_key: self.wake_id, **self.positions})
                self._hand_out(found)
                pause = MIN_READ_INTERVAL_S - (loop.time() - sent)
                if pause > 0:
                    await asyncio.sleep(pause)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("reading the answer streams failed")
            for group in self.followers.values():
                for follower in group:
                    follower.fail(error)
            self.followers.clear()
            self.positions.clear()

    async def _read(self, streams: dict[str, bytes | str]) -> Any:
        return await self.reader.xread(streams, block=BLOCK_MS, count=READ_COUNT)

    def _hand_out(self, found: Any) -> None:
        if not found:  # nothing within BLOCK_MS
            return
        for raw_key, raw_entries in found.items() if isinstance(found, dict) else found:
            key = raw_key.decode()
            if key == self.wake_key:
                self.wake_id = raw_entries[-1][0]
                continue
            group = self.followers.get(key)
            if not group:  # left while the read was out
                continue
            self.positions[key] = raw_entries[-1][0]
            entries = [_entry(entry_id, fields) for entry_id, fields in raw_entries]
            for follower in group:
                follower.deliver(entries)


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reader]
_readers = weakref.WeakKeyDictionary()


def _reader() -> _Reader:
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        reader = _readers[loop] = _Reader(async_client())
    return reader


@contextlib.asynccontextmanager
async def follow(key: str, after: int) -> AsyncIterator[Follower]:
    """Follow the answer stream `key` from after `after`, live, through the process's
    reader (`Follower.entries`)."""
    reader = _reader()
    follower = Follower(reader.client, key, after)
    reached, new = reader.add(follower, after)
    follower.read_back_until = reached  # the reader is past where this follower starts
    try:
        if new:
            await reader.wake()
        yield follower
    finally:
        reader.remove(follower)
