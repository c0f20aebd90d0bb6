"""Channels to other llmsuite services."""

import grpc

from .request_context import REQUEST_ID_METADATA_KEY, request_id_var


def channel(target: str, *, max_message_bytes: int = 4 * 1024 * 1024) -> grpc.aio.Channel:
    """A channel that spreads calls over every address `target` resolves to.

    Use `dns:///name:port` with a headless Service so each pod gets its share.
    """
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
    ]
    return grpc.aio.insecure_channel(target, options=options)


def call_metadata() -> tuple[tuple[str, str], ...]:
    request_id = request_id_var.get()
    return ((REQUEST_ID_METADATA_KEY, request_id),) if request_id else ()
