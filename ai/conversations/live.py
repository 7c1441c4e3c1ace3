"""An answer on its way: a Redis stream per answer message that the worker generating it
appends to and any number of sockets read, from the start or from where they left off.

Entry ids are `0-<seq>` with seq = 1, 2, ... in order, so "the last sequence number I saw" is
exactly where a reconnecting page resumes (XREAD after `0-<seq>`): no gaps, no duplicates. The
last entry is an `end` event. Streams expire STREAM_TTL_S after their last entry; a finished
answer is read from the database after that."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as redis_async

STREAM_TTL_S = 3600
# A read blocks at most this long (below the Redis client's socket timeout), then the reader
# checks whether it should stop and reads again.
BLOCK_MS = 2000


def stream_key(schema: str, message_public_id: str) -> str:
    return f"atrium:answer:{schema}:{message_public_id}"


def stop_key(schema: str, message_public_id: str) -> str:
    return f"atrium:answer-stop:{schema}:{message_public_id}"


async def append(client: redis_async.Redis, key: str, seq: int, event: dict[str, Any]) -> None:
    await client.xadd(key, {"e": json.dumps({**event, "seq": seq})}, id=f"0-{seq}")
    await client.expire(key, STREAM_TTL_S)


async def read_after(
    client: redis_async.Redis, key: str, seq: int, *, block_ms: int = BLOCK_MS
) -> list[dict[str, Any]]:
    """Events after `seq`, waiting up to `block_ms` for the next one (empty when none came)."""
    found = await client.xread({key: f"0-{seq}"}, block=block_ms, count=500)
    return [json.loads(fields[b"e"]) for _, entries in found for _, fields in entries]


async def length(client: redis_async.Redis, key: str) -> int:
    return await client.xlen(key)


async def text_so_far(client: redis_async.Redis, key: str) -> str:
    entries = await client.xrange(key)
    events = (json.loads(fields[b"e"]) for _, fields in entries)
    return "".join(event.get("text", "") for event in events if event["type"] == "delta")
