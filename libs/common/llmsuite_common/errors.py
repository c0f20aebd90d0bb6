"""Errors services raise, and how a call reports them (stream_driver's one interceptor does it)."""

import logging
from collections.abc import Callable
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2

from .request_context import REQUEST_ID_METADATA_KEY

log = logging.getLogger(__name__)

ERROR_DETAIL_TRAILER = "llmsuite-error-bin"


class ServiceError(Exception):
    """An expected failure with a status code; its message is safe to show to callers."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str = "") -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class InvalidArgument(ServiceError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    code = "invalid_request"


class Unauthenticated(ServiceError):
    status = grpc.StatusCode.UNAUTHENTICATED
    code = "unauthenticated"


class PermissionDenied(ServiceError):
    status = grpc.StatusCode.PERMISSION_DENIED
    code = "permission_denied"


class NotFound(ServiceError):
    status = grpc.StatusCode.NOT_FOUND
    code = "not_found"


class FailedPrecondition(ServiceError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    code = "failed_precondition"


class ResourceExhausted(ServiceError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "resource_exhausted"


class Unavailable(ServiceError):
    status = grpc.StatusCode.UNAVAILABLE
    code = "unavailable"


class DeadlineExceeded(ServiceError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    code = "timeout"


def error_detail(exc: ServiceError) -> common_pb2.ErrorDetail:
    return common_pb2.ErrorDetail(code=exc.code, message=exc.message, param=exc.param)


def read_error_detail(err: grpc.aio.AioRpcError) -> common_pb2.ErrorDetail | None:
    """The ErrorDetail a service attached to a failed call, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_DETAIL_TRAILER and isinstance(value, bytes):
            return common_pb2.ErrorDetail.FromString(value)
    return None


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, ServiceError):
        context.set_trailing_metadata(((ERROR_DETAIL_TRAILER, error_detail(exc).SerializeToString()),))
        await context.abort(exc.status, exc.message)
    if isinstance(exc, grpc.aio.AioRpcError):
        # A downstream call failed: keep its code (deadline, unavailable) but not its internals.
        await context.abort(exc.code(), exc.details() or exc.code().name.lower())
    log.exception("unhandled error", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_METADATA_KEY:
            return str(value)
    return ""


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""


_UNDECODABLE = _Undecodable()


def _tolerant(
    deserializer: Callable[[bytes], Any] | None, *, streaming: bool = False
) -> Callable[[bytes], Any] | None:
    # grpc turns a raising deserializer into UNKNOWN carrying the parser's text;
    # callers should get INVALID_ARGUMENT and nothing about our internals.
    # A unary request is parsed before the handler runs: a stand-in reaches the wrapper, which
    # answers for it. A request stream's messages are parsed as the handler reads them, so the
    # error is raised right there and ends the call like any other InvalidArgument.
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any parse failure means a malformed request
            if streaming:
                raise _unparsable() from None
            return _UNDECODABLE

    return parse


def _unparsable() -> "InvalidArgument":
    return InvalidArgument("request message could not be parsed", code="invalid_message")
