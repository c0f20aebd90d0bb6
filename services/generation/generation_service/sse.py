"""Incremental Server-Sent Events parser, after the WHATWG "event stream interpretation".

Bytes arrive in whatever pieces the network makes: a line, a CRLF pair or a
UTF-8 sequence may be cut anywhere, so decoding is incremental and a line is
only interpreted once its terminator has arrived. An event still incomplete
when the stream ends is dropped, as the standard says.
"""

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")

DEFAULT_MAX_EVENT_CHARS = 4 * 1024 * 1024


class SSEError(ValueError):
    """The stream broke a limit this parser enforces."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    def __init__(self, *, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        # Invalid bytes become U+FFFD as the standard asks; valid UTF-8 never does,
        # however it is split, because the decoder keeps partial sequences.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_event_chars
        self._started = False
        self._skip_lf = False
        self._partial: list[str] = []
        self._data: list[str] = []
        self._partial_chars = 0
        self._data_chars = 0
        self._event = ""
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this piece of the stream, in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            # The previous piece ended in CR; an LF here belongs to the same line end.
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            line = text[start : match.start()]
            if self._partial:
                line = "".join(self._partial) + line
                self._partial.clear()
                self._partial_chars = 0
            self._line(line, events)
            start = match.end()
        if text.endswith("\r"):
            self._skip_lf = True
        if start < len(text):
            rest = text[start:]
            self._partial.append(rest)
            self._partial_chars += len(rest)
            self._check_size()
        return events

    def _check_size(self) -> None:
        if self._partial_chars + self._data_chars > self._max:
            raise SSEError(f"event larger than {self._max} characters")

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value) + 1
            self._check_size()
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(SSEEvent("\n".join(self._data), self._event or "message", self.last_event_id))
        self._data.clear()
        self._data_chars = 0
        self._event = ""
