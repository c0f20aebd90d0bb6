"""A service whose start() takes START_SECONDS, to observe health while loading and draining.

It also streams: `llmsuite.test.Slow/Count` with the request `b"<n>,<interval>"` sends n messages
(`b"0"`, `b"1"`, ...) `interval` seconds apart, to watch a stream across a connection's age and
a shutdown. `llmsuite.test.Slow/Who` answers its port, or `b"loading"` before start() returned, to
see which replica a call reached.
"""

import asyncio
import os
from collections.abc import AsyncIterator

import grpc
from llmsuite_common.grpc_server import run
from llmsuite_common.settings import ServiceSettings
from llmsuite_common.telemetry import setup_telemetry

SERVICE = "llmsuite.test.Slow"


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    n, interval = request.decode().split(",")
    for i in range(int(n)):
        if i:
            await asyncio.sleep(float(interval))
        yield str(i).encode()


class SlowStartApp:
    service_names = (SERVICE,)
    audience = "slow"

    def __init__(self) -> None:
        self.started = False

    async def who(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return os.environ["PORT"].encode() if self.started else b"loading"

    def add_to_server(self, server: grpc.aio.Server) -> None:
        # Raw bytes in and out: no message types needed for a test service.
        handlers = {
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Who": grpc.unary_unary_rpc_method_handler(self.who),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    async def start(self) -> None:
        await asyncio.sleep(float(os.environ["START_SECONDS"]))
        self.started = True

    async def stop(self) -> None:
        return None


if __name__ == "__main__":
    settings = ServiceSettings()
    setup_telemetry(settings)
    run(settings, SlowStartApp())
