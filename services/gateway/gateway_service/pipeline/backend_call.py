"""One unary backend call, the way every one is made: within the request's deadline, and a failed
call turned into the client-facing error of its service (errors.from_grpc). The request id,
trace context and service token travel as metadata, added by the stub (TracedStub)."""

from typing import Any

import grpc

from ..api.errors import from_grpc
from .deadline import Deadline


async def backend_call(method: Any, request: Any, deadline: Deadline, service: str) -> Any:
    try:
        return await method(request, timeout=deadline.remaining())
    except grpc.aio.AioRpcError as err:
        raise from_grpc(err, service) from None
