"""The HTTP/1.1 connection handling of the gateway's listener: uvicorn's httptools protocol, with
the limits that keep slow or numerous clients from holding the gateway.

uvicorn bounds only the wait between requests on a kept-alive connection (`timeout_keep_alive`).
A client that connects and sends nothing, or sends its headers a byte at a time, would hold its
connection (and the memory of its half-read headers) forever, and enough of them exhaust the
process's file descriptors. So, per connection:
- the headers must be complete within GATEWAY_HEADER_TIMEOUT_SECONDS of connecting (or of the
  first byte of the next request): otherwise 408 and close (a connection that sent nothing is
  just closed);
- header bytes are bounded (431 and close beyond MAX_HEADER_BYTES);
- a request the parser refuses (a NUL in a header, say) gets an OpenAI-style 400, not plain text;
- beyond GATEWAY_MAX_CONNECTIONS open connections, a new one is answered 503 with Retry-After
  (OpenAI-style body) and closed.
The body's own deadline is enforced in the app (body_limit.py), where the answer is an ordinary
response.
"""

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import ApiError, envelope, error_response, shape_for

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
OVERLOADED_RETRY_AFTER_SECONDS = 1


def overloaded() -> ApiError:
    return ApiError(
        503,
        "the gateway has too many open connections; retry shortly",
        code="overloaded",
        headers={"retry-after": str(OVERLOADED_RETRY_AFTER_SECONDS), "connection": "close"},
    )


def raw_response(error: ApiError) -> bytes:
    """A whole HTTP/1.1 error response, for answers written before any ASGI app runs."""
    body = orjson.dumps(envelope(error))
    headers = {"content-type": "application/json", **error.headers, "connection": "close"}
    head = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
    return STATUS_LINE[error.status] + head + b"content-length: %d\r\n\r\n" % len(body) + body


class _Refusals:
    """Refused connections, logged at most once per interval: a flood must not flood the log too."""

    INTERVAL_SECONDS = 10.0

    def __init__(self) -> None:
        self._count = 0
        self._last = float("-inf")

    def note(self, open_connections: int) -> None:
        self._count += 1
        now = asyncio.get_running_loop().time()
        if now - self._last >= self.INTERVAL_SECONDS:
            log.warning(
                "connections over GATEWAY_MAX_CONNECTIONS refused",
                extra={"refused": self._count, "open": open_connections},
            )
            self._count, self._last = 0, now


_refusals = _Refusals()


async def _overloaded_app(scope: Any, receive: Any, send: Any) -> None:
    await error_response(overloaded(), shape_for(scope.get("path", "")))(scope, receive, send)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Set by `guarded_protocol`: the limits of one listener."""

    header_timeout: float = 10.0
    max_connections: int = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = False
        self._over_capacity = False

    # --- connection ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._over_capacity = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if self._over_capacity:
            # Answered once its request line and headers are read, so the client sees the 503.
            self.app = _overloaded_app
            _refusals.note(len(self.connections))
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing: a chunk that completes the headers may carry the body with it.
        if self._in_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(
                    ApiError(
                        431,
                        f"request headers exceed {MAX_HEADER_BYTES} bytes",
                        code="request_headers_too_large",
                    )
                )

    def send_400_response(self, msg: str) -> None:
        # What the parser refuses (a NUL or control character in a header, a malformed request line)
        # gets the same error body as every other answer, not uvicorn's plain text.
        self._refuse(ApiError(400, f"invalid HTTP request: {msg}", code="invalid_http_request"))

    def handle_websocket_upgrade(self) -> None:
        if self._over_capacity:
            self._refuse(overloaded())
            return
        super().handle_websocket_upgrade()

    # --- parser callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    # --- header deadline ------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._in_headers:
            # Connected and never sent a byte: nothing to answer.
            self.transport.close()
            return
        self._refuse(
            ApiError(
                408,
                f"the request headers did not arrive within {self.header_timeout:g} seconds",
                code="request_timeout",
            )
        )

    def _refuse(self, error: ApiError) -> None:
        self._disarm_header_timer()
        if not self.transport.is_closing():
            self.transport.write(raw_response(error))
            self.transport.close()


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for one listener (uvicorn instantiates it per connection)."""
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )
