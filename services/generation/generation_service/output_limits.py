"""Stop sequences and the token cap, enforced here as well as asked of the upstream.

Not every OpenAI-compatible server honours `stop` (or all of it), and a
misbehaving one may run past `max_tokens`; every extra token is paid for. So
the text is watched as it streams: at a stop sequence the output is cut before
it and the upstream request is closed, and past the cap the stream ends with
finish_reason "length". To catch a stop sequence split across chunks, only the
tail that could still become one is held back; everything else is passed on at
once, so streaming stays token by token.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Emit:
    text: str
    # "stop" or "length" when the output must end here; "" to go on.
    finish: str = ""


class OutputLimits:
    def __init__(self, stops: list[str] | tuple[str, ...], max_tokens: int | None) -> None:
        self._stops = tuple(s for s in stops if s)
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
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return Emit(buffer[:cut], "stop")
        keep = self._partial_stop_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return Emit(buffer[: len(buffer) - keep])

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
