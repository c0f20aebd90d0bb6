"""The streaming output rail: generated deltas in, verified text out, with a bounded hold-back.

In verify_first mode text is released only once `hold_back_tokens` newer tokens have arrived (or
it has waited `hold_back_ms`), and every release is preceded by a scan of the held text plus a
tail of what was already released, so a match that spans deltas is seen whole. A blocking match
that reaches into held text stops the stream before any of it is released; redactions are applied
to held text before it goes out. In stream_first mode text goes out at once and the same scan
only flags what it finds.
"""

import time
from collections import deque
from dataclasses import dataclass, field

from .detectors import Span
from .findings import Finding
from .output_scan import OutputMatch, OutputScanner, redaction_label
from .tokens import approx_tokens

# Enough released text to see a secret or term that started before the release point.
TAIL_CHARS = 256


@dataclass
class Step:
    # One piece per generated delta (or part of one), so the client still gets one chunk per
    # upstream chunk, only later.
    released: list[str] = field(default_factory=list)
    blocked: list[Finding] | None = None


@dataclass
class _Mark:
    end: int  # offset just past this delta in the held text
    tokens: int
    arrived: float


@dataclass
class RailState:
    redactions: int = 0
    flags: list[Finding] = field(default_factory=list)
    scan_us: int = 0


class OutputRail:
    def __init__(self, scanner: OutputScanner) -> None:
        out = scanner.output
        self._scanner = scanner
        self.mode = out.mode
        self._hold_tokens = out.hold_back_tokens
        self._hold_seconds = out.hold_back_ms / 1000
        self._held = ""
        self._marks: deque[_Mark] = deque()
        self._tail = ""
        self._released_total = 0  # chars of raw text released so far
        self._seen: set[tuple[str, str, int]] = set()
        self.state = RailState()
        self.finished = False

    @property
    def held_text(self) -> str:
        return self._held

    def feed(self, delta: str, now: float) -> Step:
        if delta:
            self._held += delta
            # Token counts only matter to a token hold-back; without one every mark is past it.
            tokens = max(1, approx_tokens(delta)) if self._hold_tokens else 1
            self._marks.append(_Mark(len(self._held), tokens, now))
        return self._advance(now, final=False)

    def tick(self, now: float) -> Step:
        """Time-based release when no new delta has come."""
        return self._advance(now, final=False)

    @property
    def timed(self) -> bool:
        """Whether held text may be released by age, so the caller must wake without a delta."""
        return bool(self._hold_seconds) and self.mode == "verify_first"

    def next_due(self) -> float | None:
        """When the oldest held delta may be released by age, if a time limit is set."""
        if not self.timed or not self._marks:
            return None
        return self._marks[0].arrived + self._hold_seconds

    def finish(self, now: float) -> Step:
        step = self._advance(now, final=True)
        self.finished = True
        return step

    def _advance(self, now: float, *, final: bool) -> Step:
        if not self._held:
            return Step()
        t0 = time.perf_counter_ns()
        offset = len(self._tail)
        window = self._tail + self._held
        matches = [m for m in self._scanner.scan(window) if m.span.end > offset]
        self.state.scan_us += (time.perf_counter_ns() - t0) // 1000
        blocking = [m for m in matches if m.action == "block"]
        warnings = [m for m in matches if m.action == "warn"]
        if self.mode == "stream_first":
            self._flag(blocking + warnings, offset)
            blocking = []
        else:
            self._flag(warnings, offset)
        if blocking:
            return Step(blocked=_findings(blocking))
        cut = len(self._held) if final or self.mode == "stream_first" else self._cut(now)
        redactions = [m for m in matches if m.action == "redact"]
        if not final and self.mode == "verify_first":
            # A match that straddles the cut may still grow: release only up to where it starts.
            for m in redactions:
                start, end = m.span.start - offset, m.span.end - offset
                if start < cut < end or (end == len(self._held) and start < cut):
                    cut = max(0, start)
        if cut <= 0:
            return Step()
        raw = self._held[:cut]
        inside = [
            Span(m.span.kind, max(0, m.span.start - offset), m.span.end - offset)
            for m in redactions
            if m.span.start - offset < cut
        ]
        bounds = [m.end for m in self._marks if m.end < cut] + [cut]
        released = _redact_pieces(raw, inside, bounds)
        self.state.redactions += len(inside)
        self._held = self._held[cut:]
        kept: deque[_Mark] = deque()
        for mark in self._marks:
            if mark.end > cut:
                kept.append(_Mark(mark.end - cut, mark.tokens, mark.arrived))
        self._marks = kept
        self._tail = (self._tail + raw)[-TAIL_CHARS:]
        self._released_total += cut
        return Step(released=released)

    def _cut(self, now: float) -> int:
        """How much held text the hold-back rule lets go: all but the newest N tokens, plus
        anything older than the time limit."""
        remaining = sum(m.tokens for m in self._marks)
        cut = 0
        for mark in self._marks:
            remaining -= mark.tokens
            aged = self._hold_seconds and now - mark.arrived >= self._hold_seconds
            if remaining >= self._hold_tokens or aged:
                cut = mark.end
            else:
                break
        return cut

    def _flag(self, matches: list[OutputMatch], offset: int) -> None:
        for m in matches:
            key = (m.check, m.span.kind, self._released_total - offset + m.span.start)
            if key not in self._seen:
                self._seen.add(key)
                self.state.flags.extend(_findings([m]))


def _findings(matches: list[OutputMatch]) -> list[Finding]:
    by_check: dict[tuple[str, str], list[OutputMatch]] = {}
    for m in matches:
        by_check.setdefault((m.check, m.action), []).append(m)
    return [
        Finding(
            check,
            "output_" + ("denied_term" if check == "deny" else check),
            f"the response contains {len(ms)} {check} match(es): {', '.join(sorted({m.span.kind for m in ms}))}",
            action,
            count=len(ms),
        )
        for (check, action), ms in by_check.items()
    ]


def _redact_pieces(raw: str, spans: list[Span], bounds: list[int]) -> list[str]:
    """Splits raw at `bounds` (delta ends) and redacts spans; a span's label goes in the piece
    where the span starts, and the pieces it runs into lose the covered text."""
    ordered = sorted(spans, key=lambda s: s.start)
    pieces: list[str] = []
    start = 0
    covered_to = 0
    for end in bounds:
        out: list[str] = []
        pos = max(start, covered_to)
        for span in ordered:
            if span.end <= start or span.start >= end or span.end <= pos and span.start < start:
                continue
            if span.start >= start:
                out.append(raw[pos : max(pos, span.start)])
                out.append(redaction_label(span))
            pos = max(pos, min(span.end, end))
            covered_to = max(covered_to, min(span.end, len(raw)))
        out.append(raw[pos:end])
        piece = "".join(out)
        if piece:
            pieces.append(piece)
        start = end
    return pieces
