"""Reading the request body: oversized bodies are refused before anything parses them, and a body
that arrives too slowly is cut off, so a slow client cannot hold a request (and its connection) open.
"""

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response, shape_for


class BodyTooLarge(HTTPException):
    # An HTTPException so FastAPI's body reader re-raises it instead of turning it into a 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class BodyTooSlow(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, body_too_slow(seconds).message, headers={"connection": "close"})


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")


def body_too_slow(seconds: float) -> ApiError:
    # The rest of the body is never read: the connection closes after this answer.
    return ApiError(
        408,
        f"the request body did not arrive within {seconds:g} seconds",
        code="request_timeout",
        headers={"connection": "close"},
    )


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_seconds: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    error = ApiError(400, "invalid Content-Length header")
                    await error_response(error, shape_for(scope["path"]))(scope, receive, send)
                    return
                if int(value) > self.max_bytes:
                    await error_response(too_large(self.max_bytes), shape_for(scope["path"]))(
                        scope, receive, send
                    )
                    return

        received = 0
        complete = False
        response_started = False
        loop = asyncio.get_running_loop()
        # The whole body shares one deadline, counted from its headers: a client trickling a byte
        # at a time gets no longer than one that sends nothing.
        deadline = loop.time() + self.read_timeout if self.read_timeout is not None else None

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete or deadline is None:
                # Past the body, receive() waits for the disconnect for as long as the response takes.
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTooSlow(self.read_timeout or 0.0) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if response_started:
                raise
            await error_response(too_large(self.max_bytes), shape_for(scope["path"]))(scope, receive, send)
        except BodyTooSlow:
            if response_started:
                raise
            slow = body_too_slow(self.read_timeout or 0.0)
            await error_response(slow, shape_for(scope["path"]))(scope, receive, send)
