"""The floor of the generation -> gateway hop: CPU per streamed message of bare grpc.aio.

A servicer that does nothing but yield GenerateResponse deltas (`--messages` per call, `--gap`
seconds apart, as a model's tokens arrive) in its own process, and a client here that only reads
them, `--streams` calls at once; both on uvloop, as the services run. What each process spends per
message (user + system CPU) is what grpcio itself costs, below any llmsuite code: the chain's CPU
per streamed chunk cannot go under the sum of the two. Both run grpc with the services'
`GRPC_EXPERIMENTS` (bench/generation/__init__.py); set it to compare (an empty value is grpc's own
defaults).

    .venv/bin/python -m bench.generation.grpc_floor [--streams 16] [--messages 200] [--gap 0.02]
    GRPC_EXPERIMENTS= .venv/bin/python -m bench.generation.grpc_floor
"""

import argparse
import asyncio
import multiprocessing
import time
from typing import Any

import grpc
import psutil
import uvloop
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc


class _Deltas(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, messages: int, gap: float) -> None:
        self._messages, self._gap = messages, gap

    async def Generate(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        for i in range(self._messages):
            await asyncio.sleep(self._gap)
            yield generation_pb2.GenerateResponse(delta=generation_pb2.Delta(content=f"token{i} "))


def _serve(ports: Any, messages: int, gap: float) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(_Deltas(messages, gap), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ports.put(port)
        await server.wait_for_termination()

    uvloop.run(run())


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _measure(port: int, server: psutil.Process, streams: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)

        async def read() -> int:
            return sum([1 async for _ in stub.Generate(generation_pb2.GenerateRequest())])

        await asyncio.gather(*(read() for _ in range(2)))  # warm-up: connection, first calls
        me = psutil.Process()
        client_before, server_before, started = _cpu(me), _cpu(server), time.perf_counter()
        messages = sum(await asyncio.gather(*(read() for _ in range(streams))))
        client_cpu, server_cpu = _cpu(me) - client_before, _cpu(server) - server_before
    return {
        "messages": messages,
        "seconds": time.perf_counter() - started,
        "client_us_per_message": 1e6 * client_cpu / messages,
        "server_us_per_message": 1e6 * server_cpu / messages,
        "both_us_per_message": 1e6 * (client_cpu + server_cpu) / messages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generation.grpc_floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ports: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_serve, args=(ports, args.messages, args.gap), daemon=True)
    child.start()
    try:
        port = ports.get(timeout=30)
        for number in range(args.rounds):
            r = uvloop.run(_measure(port, psutil.Process(child.pid), args.streams))
            print(
                f"round {number + 1}: {r['messages']} messages in {r['seconds']:.1f} s; CPU per message: "
                f"servicer {r['server_us_per_message']:.0f} µs, client {r['client_us_per_message']:.0f} µs, "
                f"both {r['both_us_per_message']:.0f} µs"
            )
    finally:
        child.kill()


if __name__ == "__main__":
    main()
