"""Token buckets in Redis, shared by every process. One Lua script checks and charges several
buckets at once (e.g. the API key's and its tenant's): either all of them have the tokens and
all are charged, or none is. No read-then-write from Python, so parallel requests cannot
overshoot a limit (DRF's own throttles read, then write)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from redis.commands.core import Script

from saas.lib.redis import sync_client

PREFIX = "atrium:ratelimit:"

# KEYS: the buckets. ARGV: cost, then capacity and refill-per-second for each bucket.
# A bucket is a hash {tokens, at_ms}; it starts full. Returns {admitted (0/1), tokens left in
# the tightest bucket (fewest left), ms until every bucket has `cost` tokens, tightest index}.
_TAKE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local cost = tonumber(ARGV[1])
local tokens, capacities, rates = {}, {}, {}
local admitted, remaining, wait_ms, tightest = 1, math.huge, 0, 1
for i, key in ipairs(KEYS) do
  local capacity, rate = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'at_ms')
  local level = capacity
  if state[1] then
    level = math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) * rate / 1000)
  end
  tokens[i], capacities[i], rates[i] = level, capacity, rate
  if level < cost then
    admitted = 0
    wait_ms = math.max(wait_ms, math.ceil((cost - level) * 1000 / rate))
  end
  if level < remaining then remaining, tightest = level, i end
end
for i, key in ipairs(KEYS) do
  local level = tokens[i]
  if admitted == 1 then level = level - cost end
  redis.call('HSET', key, 'tokens', tostring(level), 'at_ms', now)
  redis.call('PEXPIRE', key, math.ceil(capacities[i] * 1000 / rates[i]) + 1000)
end
if admitted == 1 then remaining = remaining - cost end
return {admitted, math.floor(remaining), wait_ms, tightest}
"""


@dataclass(frozen=True)
class Bucket:
    """`capacity` tokens, refilled evenly over `period_s` (e.g. 60 requests per 60 s)."""

    key: str
    capacity: int
    period_s: float = 60.0

    @property
    def rate_per_s(self) -> float:
        return self.capacity / self.period_s


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limit: int  # capacity of the tightest bucket (the one with the fewest tokens left)
    remaining: int
    reset_s: int  # until that bucket is full again (RateLimit-Reset)
    retry_after_s: int  # 0 when admitted


@cache
def _script() -> Script:
    return sync_client().register_script(_TAKE)


def buckets_take(buckets: list[Bucket], cost: int = 1) -> Decision:
    """Charge `cost` tokens to every bucket, or to none if any lacks them."""
    args: list[float] = [cost]
    for bucket in buckets:
        args += [bucket.capacity, bucket.rate_per_s]
    keys = [PREFIX + bucket.key for bucket in buckets]
    admitted, remaining, wait_ms, tightest_index = _script()(keys=keys, args=args)
    tightest = buckets[int(tightest_index) - 1]
    remaining = max(0, int(remaining))
    return Decision(
        admitted=bool(admitted),
        limit=tightest.capacity,
        remaining=remaining,
        reset_s=math.ceil((tightest.capacity - remaining) / tightest.rate_per_s),
        retry_after_s=0 if admitted else max(1, math.ceil(int(wait_ms) / 1000)),
    )


def buckets_refund(buckets: list[Bucket], amount: int) -> None:
    """Give back `amount` tokens charged earlier (a bucket never rises above its capacity)."""
    if amount > 0:
        keys = [PREFIX + bucket.key for bucket in buckets]
        args: list[float] = [-amount]
        for bucket in buckets:
            args += [bucket.capacity, bucket.rate_per_s]
        _script()(keys=keys, args=args)
