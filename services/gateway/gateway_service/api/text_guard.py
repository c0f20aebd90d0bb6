"""NUL characters and lone surrogates in client input are refused at the edge with 400.

Neither is text anything behind the gateway can carry: PostgreSQL refuses a NUL in any text value,
and a lone UTF-16 surrogate is not UTF-8 (gRPC, orjson and PostgreSQL all refuse it). Let through,
either turns a client's mistake into a 500 deep inside a route, or a row the request log cannot
store. They are refused once, here, before any route parses the request: in the path, the query
string, header values, a JSON body (written as the escapes `\\u0000` or an unpaired `\\ud800`) and
WebSocket text frames (routes/ws.py calls `check_json_text`).

The body check is cheap for ordinary requests (a few microseconds for a chat request): only a body
with a `\\u0000` or `\\udXXX` escape is parsed here, to find out whether the escape really makes
such a character (a surrogate pair is one ordinary character) and which field holds it.
"""

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..edge.auth import refuse
from .errors import ApiError, error_response, shape_for

CODE = "invalid_characters"
_BAD = re.compile("[\x00\ud800-\udfff]")
# An escape that may decode to a NUL or a surrogate (a valid pair is sorted out by parsing).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_SUSPECT_TEXT = re.compile("[\x00]|\\\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def has_bad_text(text: str) -> bool:
    return _BAD.search(text) is not None


def _shown(part: Any) -> str:
    # The param names the field; a field name holding the character itself is shown escaped.
    return _BAD.sub(lambda m: f"\\u{ord(m.group()):04x}", str(part))


def _param(path: tuple[Any, ...]) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{_shown(part)}" if out else _shown(part))
    return out or None


def bad_text_path(value: Any) -> tuple[Any, ...] | None:
    """Where in a parsed JSON value the first NUL or lone surrogate is (in a key or a string)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if has_bad_text(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if has_bad_text(key):
                    return (*path, key)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
    return None


def refused(where: str, param: str | None) -> ApiError:
    return ApiError(
        400,
        f"{where} contains a NUL character or an unpaired UTF-16 surrogate, which are not accepted",
        code=CODE,
        param=param,
    )


def _body_error(body: bytes) -> ApiError | None:
    # A body without a backslash (found at memchr speed) has no escape at all.
    if b"\\" not in body or _SUSPECT_ESCAPE.search(body) is None:
        return None
    try:
        # The parser FastAPI uses, so the strings are exactly those a route would see.
        value = json.loads(body)
    except ValueError:
        return None  # not JSON: the route reports that
    path = bad_text_path(value)
    if path is None:
        return None
    param = _param(path)
    return refused(f"the request body field '{param}'" if param else "the request body", param)


def check_json_text(text: str) -> None:
    """Raises the 400 for a JSON document (a WebSocket frame) holding a NUL or lone surrogate."""
    if _SUSPECT_TEXT.search(text) is None:
        return
    if has_bad_text(text):
        raise refused("the request", None)
    try:
        value = json.loads(text)
    except ValueError:
        return
    path = bad_text_path(value)
    if path is not None:
        param = _param(path)
        raise refused(f"the request field '{param}'" if param else "the request", param)


def _scope_error(scope: Scope) -> ApiError | None:
    if "\x00" in scope["path"]:
        return refused("the URL path", None)
    query = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        for name, value in _query_pairs(query):
            if "\x00" in name or "\x00" in value:
                return refused(f"the query parameter '{_shown(name)}'", _shown(name))
    for name, value in scope["headers"]:
        if b"\x00" in value or b"\x00" in name:
            shown = _shown(name.decode("latin-1"))
            return refused(f"the header '{shown}'", shown)
    return None


def _query_pairs(query: bytes) -> list[tuple[str, str]]:
    # As Starlette reads the query string, so the names match what a route would see.
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True)


class TextGuardMiddleware:
    """Refuses requests whose path, query, headers or JSON body hold a NUL or a lone surrogate.

    The body is read here, before the route, and handed on whole; its size is bounded by
    BodySizeLimitMiddleware outside this one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        error = _scope_error(scope)
        if error is not None:
            await refuse(error, scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        message: Message = {"type": "http.request", "body": b"", "more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                # The client left before its body was complete: nothing to answer.
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        error = _body_error(body)
        if error is not None:
            await error_response(error, shape_for(scope["path"]))(scope, receive, send)
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay(whole, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
