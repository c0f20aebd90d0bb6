"""A service whose start() takes START_SECONDS, to observe health while loading and draining."""

import asyncio
import os

import grpc
from llmsuite_common.grpc_server import run
from llmsuite_common.settings import ServiceSettings
from llmsuite_common.telemetry import setup_telemetry


class SlowStartApp:
    service_names = ("llmsuite.test.Slow",)
    audience = "slow"

    def add_to_server(self, server: grpc.aio.Server) -> None:
        return None

    async def start(self) -> None:
        await asyncio.sleep(float(os.environ["START_SECONDS"]))

    async def stop(self) -> None:
        return None


if __name__ == "__main__":
    settings = ServiceSettings()
    setup_telemetry(settings)
    run(settings, SlowStartApp())
