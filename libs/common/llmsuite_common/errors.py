"""Errors services raise, and the one interceptor that turns them into gRPC statuses."""

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2

from .handlers import wrap_behavior
from .request_context import REQUEST_ID_METADATA_KEY, request_id_var

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
    for key, value in details.invocation_metadata or ():  # type: ignore[attr-defined]
        if key == REQUEST_ID_METADATA_KEY:
            return str(value)
    return ""


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions to status codes and binds the caller's request id for logging.

    The mapping alone, for servers without serve()'s ServerCallInterceptor (which does the same).
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        request_id = _request_id(handler_call_details)
        wrapped = wrap_behavior(
            handler,
            unary=lambda fn: _wrap_unary(fn, request_id),
            stream=lambda fn: _wrap_stream(fn, request_id),
        )
        tolerant = _tolerant(handler.request_deserializer, streaming=handler.request_streaming)
        return wrapped._replace(request_deserializer=tolerant)  # type: ignore[attr-defined]


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer INVALID_ARGUMENT."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None, *, streaming: bool = False) -> Callable[[bytes], Any] | None:
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


def _check_decoded(request: Any) -> None:
    if request is _UNDECODABLE:
        raise _unparsable()


def _wrap_unary(fn: Callable[..., Awaitable[Any]], request_id: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = request_id_var.set(request_id)
        try:
            _check_decoded(request)
            return await fn(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure must become a status
            await _abort(context, exc)
        finally:
            request_id_var.reset(token)

    return wrapper


def _wrap_stream(fn: Callable[..., AsyncIterator[Any]], request_id: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        token = request_id_var.set(request_id)
        try:
            _check_decoded(request)
            async with contextlib.aclosing(fn(request, context)) as items:
                async for item in items:
                    yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, exc)
        finally:
            # A stream dropped by its caller is closed later from another context,
            # where the token no longer applies; that context is discarded anyway.
            with contextlib.suppress(ValueError):
                request_id_var.reset(token)

    return wrapper
