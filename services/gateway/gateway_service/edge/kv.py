"""A small key-value store for idempotency records and cached responses: Redis or in-process."""

from collections import OrderedDict
from typing import Any, Protocol

from llmsuite_common.clock import Clock, monotonic

KEY_PREFIX = "llmsuite:"


class KeyValueStore(Protocol):
    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Stores `value` only if `key` is absent; whether it did."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def add_float(self, key: str, amount: float, ttl_seconds: float) -> float:
        """Adds to a counter (created at 0) and returns the new value."""


class MemoryStore:
    """For a single replica; oldest entries go first once `max_entries` is reached."""

    def __init__(self, max_entries: int = 10_000, clock: Clock = monotonic) -> None:
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def _live(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.put(key, value, ttl_seconds)
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._items[key] = (self._clock() + ttl_seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def add_float(self, key: str, amount: float, ttl_seconds: float) -> float:
        item = self._items.get(key)
        expires, value = item if item is not None and item[0] > self._clock() else (None, b"0")
        total = float(value) + amount
        self._items[key] = (expires or self._clock() + ttl_seconds, repr(total).encode())
        return total


class RedisStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        return bool(await self._redis.set(KEY_PREFIX + key, value, nx=True, px=int(ttl_seconds * 1000)))

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(KEY_PREFIX + key)
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._redis.set(KEY_PREFIX + key, value, px=int(ttl_seconds * 1000))

    async def delete(self, key: str) -> None:
        await self._redis.delete(KEY_PREFIX + key)

    async def add_float(self, key: str, amount: float, ttl_seconds: float) -> float:
        pipe = self._redis.pipeline(transaction=True)
        pipe.incrbyfloat(KEY_PREFIX + key, amount)
        pipe.expire(KEY_PREFIX + key, int(ttl_seconds), nx=True)
        total, _ = await pipe.execute()
        return float(total)
