"""Wrapping the behaviour of a gRPC method handler, whatever its streaming kind."""

from collections.abc import Callable
from typing import Any

import grpc

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]


def wrap_behavior(
    handler: grpc.RpcMethodHandler, *, unary: Wrap | None, stream: Wrap | None
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour passed through `unary` (one response) or `stream` (a stream)."""
    kinds = (("unary_unary", unary), ("stream_unary", unary), ("unary_stream", stream), ("stream_stream", stream))
    for kind, wrap in kinds:
        behavior = getattr(handler, kind)
        if behavior is not None:
            if wrap is None:
                return handler
            return handler._replace(**{kind: wrap(behavior)})  # type: ignore[attr-defined]
    return handler
