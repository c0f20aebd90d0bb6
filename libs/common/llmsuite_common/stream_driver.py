"""Drives server-streaming handlers so a cancelled call closes every generator at once."""

import contextlib
import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from .handlers import wrap_behavior

G = TypeVar("G", bound=AsyncGenerator[Any, None])

_open_streams: contextvars.ContextVar[list[AsyncGenerator[Any, None]] | None] = contextvars.ContextVar(
    "open_streams", default=None
)


def track(generator: G) -> G:
    """Registers an interceptor's inner generator so the driver closes it explicitly.

    A layer that iterates its inner generator with a bare `async for` (OpenTelemetry's
    server interceptor does) leaves that generator suspended when it is closed itself;
    only the garbage collector would close it, later, from another task.
    """
    streams = _open_streams.get()
    if streams is not None:
        streams.append(generator)
    return generator


class StreamDriverInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: iterates response generators itself and writes each message.

    When a call ends early (client cancel, deadline, a write into a dead stream) the
    generators are closed here, in the call's own task and context, so whatever they
    hold (an upstream HTTP connection) is released at once.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return wrap_behavior(handler, unary=None, stream=_drive)


def _drive(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Awaitable[None]]:
    async def driver(request: Any, context: grpc.aio.ServicerContext) -> None:
        streams: list[AsyncGenerator[Any, None]] = []
        token = _open_streams.set(streams)
        try:
            async with contextlib.aclosing(behavior(request, context)) as responses:  # type: ignore[type-var]
                async for response in responses:
                    await context.write(response)
        finally:
            # Outer layers first, so each sees GeneratorExit where it is suspended.
            for stream in streams:
                await stream.aclose()
            _open_streams.reset(token)

    return driver
