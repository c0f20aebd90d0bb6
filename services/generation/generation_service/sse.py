"""Incremental Server-Sent Events parser, after the WHATWG "event stream interpretation".

Bytes arrive in whatever pieces the network makes: a line, a CRLF pair or a UTF-8 sequence may
be cut anywhere, so an event is only interpreted once the blank line ending it has arrived. An
event still incomplete when the stream ends is dropped, as the standard says.

The parser works on bytes, event by event: line ends are ASCII and never part of a UTF-8
sequence, so an event's bytes are complete once its blank line is there, and each field is
decoded whole. A piece of an upstream stream is usually one or a few whole `data:` events; each
costs one split and one decode, with no per-line or per-character work.
"""

from typing import NamedTuple

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024
# Kept for callers of the earlier name; the limit counts bytes, which bounds characters too.
DEFAULT_MAX_EVENT_CHARS = DEFAULT_MAX_EVENT_BYTES
_BOM = b"\xef\xbb\xbf"
_DATA = b"data: "


class SSEError(ValueError):
    """The stream broke a limit this parser enforces."""


class SSEEvent(NamedTuple):
    data: str
    event: str = "message"
    id: str | None = None


def _text(raw: bytes) -> str:
    # Invalid bytes become U+FFFD as the standard asks; valid UTF-8 never does.
    return raw.decode("utf-8", "replace")


class SSEParser:
    def __init__(self, *, max_event_chars: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_chars
        self._started = False
        self._skip_lf = False
        # The unfinished end of the stream: an event whose blank line has not arrived yet.
        self._rest = b""
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this piece of the stream, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            # The previous piece ended in CR; an LF here belongs to the same line end.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            # Every line end becomes LF. A CR at the very end is a line end either way; only
            # whether the next piece's first LF is part of it is not known yet.
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._rest + chunk if self._rest else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._rest = buffer
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._rest = buffer
            self._check_size()
            return []
        self._rest = buffer[end + 2 :]
        self._check_size()
        events: list[SSEEvent] = []
        for block in buffer[:end].split(b"\n\n"):
            if block[:6] == _DATA and b"\n" not in block:
                # The usual event: one `data: ` line.
                events.append(SSEEvent(_text(block[6:]), "message", self.last_event_id))
            elif block:
                self._block(block, events)
        return events

    def _check_size(self) -> None:
        if len(self._rest) > self._max:
            raise SSEError(f"event larger than {self._max} bytes")

    def _block(self, block: bytes, events: list[SSEEvent]) -> None:
        """The lines of one event (no blank line among them but leading ones), then its dispatch."""
        data: list[bytes] = []
        event = ""
        for line in block.split(b"\n"):
            if not line or line[:1] == b":":
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = _text(value)
            elif name == b"id":
                if b"\0" not in value:
                    self.last_event_id = _text(value)
            elif name == b"retry":
                if value.isdigit():
                    self.retry_ms = int(value)
        if data:
            events.append(SSEEvent(_text(b"\n".join(data)), event or "message", self.last_event_id))
