"""The sliding-window limits of ratelimit.py in Redis, shared by every replica.

One Lua script checks and commits all of a request's rules atomically, reading the clock with Redis'
own TIME, so replicas with skewed clocks still agree. Each WINDOW rule is a sorted set of
"<member>:<cost>" scored by admission time (ms) plus a running sum; each CONCURRENCY rule is a sorted
set of lease members scored by their expiry. Rules of one request may live in different slots, so
this targets one Redis (or a cluster with the keys hash-tagged), not a sharded cluster as is.
"""

from typing import Any

from .ratelimit import CONCURRENCY, Decision, Rule

KEY_PREFIX = "llmsuite:rl:"

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = tonumber(ARGV[2])
local function cost_of(m) return tonumber(string.match(m, ':(%d+)$')) end
local best, best_used, best_reset, best_left = 0, 0, 0, -1
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local kind, limit, window, cost = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local z, s = KEYS[2 * i - 1], KEYS[2 * i]
  if kind == 'w' then
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window)
    local used
    if #old > 0 then
      local freed = 0
      for _, m in ipairs(old) do freed = freed + cost_of(m) end
      redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
      used = redis.call('DECRBY', s, freed)
    else
      used = tonumber(redis.call('GET', s) or '0')
    end
    if used + cost > limit then
      local wait = window
      if cost <= limit then
        local need, freed = used + cost - limit, 0
        local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
        for j = 1, #entries, 2 do
          freed = freed + cost_of(entries[j])
          if freed >= need then
            wait = tonumber(entries[j + 1]) + window - now
            break
          end
        end
      end
      if wait < 0 then wait = 0 end
      return {i, used, wait, wait}
    end
    local reset = window
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if #first > 0 then reset = tonumber(first[2]) + window - now end
    if best_left < 0 or limit - used - cost < best_left then
      best, best_used, best_reset, best_left = i, used, reset, limit - used - cost
    end
  else
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    local used = redis.call('ZCARD', z)
    if used + 1 > limit then
      local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
      local wait = tonumber(first[2]) - now
      if wait > 1000 then wait = 1000 end
      return {i, used, wait, tonumber(first[2]) - now}
    end
    if best_left < 0 or limit - used - 1 < best_left then
      best, best_used, best_reset, best_left = i, used, 0, limit - used - 1
    end
  end
end
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local kind, window, cost = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local z, s = KEYS[2 * i - 1], KEYS[2 * i]
  if kind == 'w' then
    redis.call('ZADD', z, now, member .. ':' .. cost)
    redis.call('INCRBY', s, cost)
    redis.call('PEXPIRE', z, window)
    redis.call('PEXPIRE', s, window)
  else
    redis.call('ZADD', z, now + window, member)
    redis.call('PEXPIRE', z, window)
  end
end
return {0, best_used, 0, best_reset, best}
"""

# Reconciles a reservation: swaps the entry for one with the real cost, if it is still in the window.
_ADJUST = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[2])
redis.call('INCRBY', KEYS[2], tonumber(ARGV[3]))
return 1
"""


def _keys(rule: Rule) -> tuple[str, str]:
    base = KEY_PREFIX + rule.bucket
    return base, base + ":sum"


class RedisLimitStore:
    def __init__(self, redis: Any) -> None:
        self._acquire = redis.register_script(_ACQUIRE)
        self._adjust = redis.register_script(_ADJUST)
        self._redis = redis

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        if not rules:
            return Decision(True)
        keys: list[str] = []
        args: list[Any] = [member, len(rules)]
        for rule in rules:
            keys.extend(_keys(rule))
            args.extend([rule.kind, rule.limit, int(rule.window_seconds * 1000), rule.cost])
        reply = await self._acquire(keys=keys, args=args)
        index, used, wait_ms, reset_ms = (int(v) for v in reply[:4])
        if index:
            return Decision(False, rules[index - 1], used, wait_ms / 1000, reset_ms / 1000)
        return Decision(True, rules[int(reply[4]) - 1], used, 0.0, reset_ms / 1000)

    async def adjust(self, rule: Rule, member: str, cost: int) -> None:
        if cost == rule.cost:
            return
        await self._adjust(
            keys=list(_keys(rule)), args=[f"{member}:{rule.cost}", f"{member}:{cost}", cost - rule.cost]
        )

    async def release(self, rule: Rule, member: str) -> None:
        if rule.kind == CONCURRENCY:
            await self._redis.zrem(_keys(rule)[0], member)
