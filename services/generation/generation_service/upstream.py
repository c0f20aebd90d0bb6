"""The streaming chat-completions client for one OpenAI-compatible upstream."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from llmsuite_common.errors import DeadlineExceeded, FailedPrecondition, Unavailable
from llmsuite_common.request_context import REQUEST_ID_METADATA_KEY, request_id_var

from .sse import SSEError, SSEParser
from .upstream_errors import error_for_status, error_for_stream_error, error_for_transport

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024
# After [DONE] the body normally ends at once; an upstream that lingers loses its connection.
DRAIN_SECONDS = 0.5
DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class ContentDelta:
    content: str
    role: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    finish_reason: str
    usage: dict[str, Any] | None
    upstream_id: str


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    base_url: str
    api_key: SecretStr
    connect_timeout: float
    read_timeout: float
    max_connections: int


class UpstreamClient:
    """Owns the process's one pooled HTTP client to the upstream."""

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        key = config.api_key.get_secret_value()
        self._secrets = (key,) if key else ()
        self._headers = {
            "accept": "text/event-stream",
            # Compression would make proxies and servers buffer the stream.
            "accept-encoding": "identity",
            "content-type": "application/json",
        }
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is not None:
            return
        limits = httpx.Limits(
            max_connections=self._config.max_connections,
            max_keepalive_connections=self._config.max_connections,
        )
        self._client = httpx.AsyncClient(limits=limits, timeout=self._timeout(None), trust_env=False)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _timeout(self, remaining: float | None) -> httpx.Timeout:
        connect, read = self._config.connect_timeout, self._config.read_timeout
        if remaining is not None:
            connect, read = min(connect, remaining), min(read, remaining)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    async def stream_chat(
        self, body: dict[str, Any], *, model: str, remaining: float | None
    ) -> AsyncIterator[ContentDelta | StreamDone]:
        """Content deltas as they arrive, then one StreamDone.

        `remaining` is the caller's time budget; no single wait outlasts it. Leaving
        the iteration early (cancel, deadline, aclose) closes the upstream response.
        """
        if self._client is None:
            raise FailedPrecondition("generation is not started", code="not_ready")
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline passed before the upstream call", code="timeout")
        headers = self._headers
        request_id = request_id_var.get()
        if request_id:
            headers = {**headers, REQUEST_ID_METADATA_KEY: request_id}
        try:
            async with self._client.stream(
                "POST", self._url, content=orjson.dumps(body), headers=headers, timeout=self._timeout(remaining)
            ) as response:
                if response.status_code != 200:
                    raise await self._status_error(response, model)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise Unavailable(
                        f"upstream answered with {content_type or 'no content type'}, not an event stream",
                        code="upstream_protocol_error",
                    )
                async for event in self._events(response):
                    yield event
        except httpx.TransportError as exc:
            error = error_for_transport(exc)
            log.warning("upstream transport failure", extra={"error": type(exc).__name__, "code": error.code})
            raise error from None

    async def _status_error(self, response: httpx.Response, model: str) -> Exception:
        body = b""
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) >= MAX_ERROR_BODY_BYTES:
                break
        error = error_for_status(response.status_code, body, response.headers, model=model, secrets=self._secrets)
        log.warning("upstream error status", extra={"status": response.status_code, "code": error.code})
        return error

    async def _events(self, response: httpx.Response) -> AsyncIterator[ContentDelta | StreamDone]:
        parser = SSEParser()
        upstream_id = ""
        finish_reason = ""
        usage: dict[str, Any] | None = None
        role = ""
        pieces = response.aiter_bytes()
        async for piece in pieces:
            try:
                events = parser.feed(piece)
            except SSEError as exc:
                raise Unavailable(f"upstream stream is malformed: {exc}", code="upstream_protocol_error") from None
            for event in events:
                if event.data == DONE:
                    yield StreamDone(finish_reason or "stop", usage, upstream_id)
                    await _drain(pieces)
                    return
                if event.event == "error":
                    raise error_for_stream_error(event.data, secrets=self._secrets)
                try:
                    chunk = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise Unavailable(
                        "upstream sent malformed JSON in the stream", code="upstream_protocol_error"
                    ) from None
                if not isinstance(chunk, dict):
                    raise Unavailable("upstream sent a chunk that is not an object", code="upstream_protocol_error")
                if "error" in chunk:
                    raise error_for_stream_error(chunk["error"], secrets=self._secrets)
                if not upstream_id and isinstance(chunk.get("id"), str):
                    upstream_id = chunk["id"]
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                choices = chunk.get("choices")
                if not isinstance(choices, list):
                    continue
                for choice in choices:
                    # One completion per request (n=1): other indexes are not ours to merge.
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta")
                    if isinstance(delta, dict):
                        if isinstance(delta.get("role"), str):
                            role = delta["role"]
                        content = delta.get("content")
                        if isinstance(content, str) and content:
                            yield ContentDelta(content, role)
                            role = ""
                    if isinstance(choice.get("finish_reason"), str):
                        finish_reason = choice["finish_reason"]
        raise Unavailable("upstream stream ended without [DONE]", code="upstream_incomplete")


async def _drain(pieces: AsyncIterator[bytes]) -> None:
    """Read to the end of the body so the connection can go back to the pool."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in pieces:
                pass
    except (TimeoutError, httpx.TransportError):
        pass
