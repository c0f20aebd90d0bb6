"""Stop sequences and the token cap, enforced here as well as asked of the upstream.

Not every OpenAI-compatible server honours `stop` (or all of it), and a
misbehaving one may run past `max_tokens`; every extra token is paid for. So
the text is watched as it streams: at a stop sequence the output is cut before
it and the upstream request is closed, and past the cap the stream ends with
finish_reason "length". To catch a stop sequence split across chunks, only the
tail that could still become one is held back; everything else is passed on at
once, so streaming stays token by token.

A whole (non-streamed) answer gets the same limits at once: cut at the token cap (by the
upstream's token count), then at the first stop sequence in what is left.
"""

import re
from typing import NamedTuple

# Words and single punctuation marks: where a text can be cut between tokens.
_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Emit(NamedTuple):
    text: str
    # "stop" or "length" when the output must end here; "" to go on.
    finish: str = ""


class OutputLimits:
    def __init__(self, stops: list[str] | tuple[str, ...], max_tokens: int | None) -> None:
        self._stops = tuple(s for s in stops if s)
        # A chunk none of these characters is in can neither contain nor begin a stop sequence.
        self._starts = "".join(sorted({s[0] for s in self._stops}))
        self._max_tokens = max_tokens
        self._held = ""
        self.chunks = 0

    def feed(self, text: str) -> Emit:
        """One upstream content chunk in; what to pass on now, and whether to end."""
        self.chunks += 1
        if self._max_tokens is not None and self.chunks > self._max_tokens:
            # Upstreams stream about one token per chunk: this one is past the cap.
            # It was still generated, so it stays counted.
            held, self._held = self._held, ""
            return Emit(held, "length")
        if not self._stops:
            return Emit(text)
        if not self._held:
            for c in self._starts:
                if c in text:
                    break
            else:
                return Emit(text)
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return Emit(buffer[:cut], "stop")
        keep = self._partial_stop_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return Emit(buffer[: len(buffer) - keep])

    def whole(self, text: str, tokens: int) -> Emit:
        """A whole answer of `tokens` completion tokens: what to pass on, and why it ends early, if so."""
        finish = ""
        if self._max_tokens is not None and tokens > self._max_tokens:
            text = _first_share(text, self._max_tokens / tokens)
            finish = "length"
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            return Emit(text[:cut], "stop")
        return Emit(text, finish)

    def flush(self) -> str:
        """Text held back when the upstream ends on its own."""
        held, self._held = self._held, ""
        return held

    def _partial_stop_suffix(self, buffer: str) -> int:
        """Length of the longest end of `buffer` that is the start of some stop sequence."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:n]):
                    longest = n
                    break
        return longest


def _first_share(text: str, share: float) -> str:
    """About the first `share` of `text`'s tokens: its words and punctuation marks in that share,
    cut where the next one starts (as a stream's chunk ends after its trailing space)."""
    starts = [m.start() for m in _PIECES.finditer(text)]
    keep = int(len(starts) * share)
    if not starts:
        return text[: int(len(text) * share)]
    return text[: starts[keep]] if keep < len(starts) else text
