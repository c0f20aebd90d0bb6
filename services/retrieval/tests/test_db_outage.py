"""The vector store's database going away and coming back (db_outage): calls are refused with
UNAVAILABLE at once instead of after the pool's whole timeout, and served again within about a
probe interval of the database answering, without a restart. The database is reached through a
TCP proxy the test cuts (every connection reset, new ones refused) and restores."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from llmsuite_common.errors import Unavailable
from retrieval_service.db import ChunkStore
from retrieval_service.db_outage import PROBE_SECONDS

DIM = 384
POOL_TIMEOUT = 5.0


class Proxy:
    """127.0.0.1:port -> the server's Unix socket, cut and restored on demand."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        self._server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self._socket_path)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def socket_path(database_url: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    return f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}"


@contextlib.asynccontextmanager
async def proxied_store(database_url: str) -> AsyncIterator[tuple[Proxy, ChunkStore]]:
    """A store whose database connections all go through a Proxy the test can cut."""
    proxy = Proxy(socket_path(database_url))
    await proxy.start()
    dsn = psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))
    store = ChunkStore(min_size=1, max_size=2, pool_timeout=POOL_TIMEOUT, hnsw_m=16, hnsw_ef_construction=64)
    await store.open(dsn, dimension=DIM)
    try:
        yield proxy, store
    finally:
        await store.close()
        await proxy.cut()


async def test_a_database_outage_is_refused_at_once_and_served_again_without_a_restart(database_url):
    async with proxied_store(database_url) as (proxy, store):
        assert await store.list_collections("outage", timeout=5) == []

        await proxy.cut()
        refusals = []
        for _ in range(5):
            started = time.monotonic()
            try:
                await store.list_collections("outage", timeout=10)
            except Unavailable:
                refusals.append(time.monotonic() - started)
        # The first finds its connection broken and the database unreachable; the rest know.
        assert len(refusals) == 5
        assert refusals[0] < 1.0 and max(refusals[1:]) < 0.05, refusals

        await proxy.start()
        back = time.monotonic()
        while True:
            try:
                assert await store.list_collections("outage", timeout=5) == []
                break
            except Unavailable:
                assert time.monotonic() - back < PROBE_SECONDS + 2, "not served again"
                await asyncio.sleep(0.05)
        # Within a probe interval or so: not the pool's own reconnection backoff.
        assert time.monotonic() - back < PROBE_SECONDS + 1.0


async def test_an_outage_found_by_the_checkout_ping_is_refused_at_once(database_url):
    """The pooled connection has been idle past PING_AFTER_IDLE_SECONDS, so the checkout pings it
    and the ping fails: the caller is refused as soon as the database is found down, not after
    the pool's backoff and whole timeout."""
    from retrieval_service.db import PING_AFTER_IDLE_SECONDS

    async with proxied_store(database_url) as (proxy, store):
        assert await store.list_collections("outage-idle", timeout=5) == []
        await asyncio.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await store.list_collections("outage-idle", timeout=10)
        assert time.monotonic() - started < 1.5
