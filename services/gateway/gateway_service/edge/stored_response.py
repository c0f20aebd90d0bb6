"""A finished response kept for replay (idempotency) or reuse (result cache), streams included."""

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import orjson
from starlette.responses import Response, StreamingResponse

from ..api.sse_response import SSE_HEADERS


@dataclass(frozen=True)
class StoredResponse:
    status: int
    # The whole body of a JSON response, or each SSE event of a stream in order.
    body: bytes = b""
    events: tuple[bytes, ...] | None = None

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    def dumps(self) -> bytes:
        # Bodies are JSON or SSE of JSON, so always valid UTF-8.
        doc: dict[str, object] = {"status": self.status}
        if self.events is not None:
            doc["events"] = [e.decode() for e in self.events]
        else:
            doc["body"] = self.body.decode()
        return orjson.dumps(doc)

    @classmethod
    def loads(cls, raw: bytes) -> "StoredResponse":
        doc = orjson.loads(raw)
        if "events" in doc:
            return cls(doc["status"], events=tuple(e.encode() for e in doc["events"]))
        return cls(doc["status"], body=doc["body"].encode())

    def response(self, headers: Mapping[str, str]) -> Response:
        if self.events is None:
            return Response(
                self.body, status_code=self.status, headers=dict(headers), media_type="application/json"
            )
        events = self.events

        async def replay() -> AsyncIterator[bytes]:
            for event in events:
                yield event

        return StreamingResponse(
            replay(),
            status_code=self.status,
            headers={**SSE_HEADERS, **headers},
            media_type="text/event-stream",
        )
