"""A restarted Redis closes every connection the gateway's pool holds; the next command on each
is sent again once, on a new connection, instead of failing (which would put the limiter into its
failure mode for a second, and fail idempotent requests). A Redis that is down still fails a
command at once."""

import asyncio
import time

import pytest
from gateway_service.edge.shared_state import _redis_client
from redis.exceptions import ConnectionError as RedisConnectionError

from services.gateway.tests.redis_server import redis_server


async def test_commands_after_a_redis_restart_run_on_new_connections():
    with redis_server() as server:
        if not server.private:
            pytest.skip("restarts Redis: needs a redis-server binary")
        client = _redis_client(server.url, 1.0)
        try:
            # Fills the pool with connections, all idle once done.
            assert len(await asyncio.gather(*(client.incr("n") for _ in range(40)))) == 40
            server.stop()
            server.start()
            after = await asyncio.gather(*(client.incr("n") for _ in range(40)), return_exceptions=True)
            assert [r for r in after if not isinstance(r, int)] == []

            server.stop()
            started = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await client.incr("n")
            assert time.monotonic() - started < 0.5
        finally:
            await client.aclose()
