"""Deny lists and topic terms: whole-word, case-insensitive matches."""

import re
from collections.abc import Sequence

from .detectors import Span


def terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    cleaned = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    # Whole-word match so "class" does not block "classification".
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in cleaned) + r")(?!\w)", re.IGNORECASE)


class Terms:
    """Term spans, gated by plain substring tests on the lower-cased text."""

    def __init__(self, terms: Sequence[str]) -> None:
        self.lowered = tuple({t.strip().lower() for t in terms if t.strip()})
        self.pattern = terms_pattern(terms)

    def spans(self, text: str, lowered: str, kind: str) -> list[Span]:
        if self.pattern is None or not any(t in lowered for t in self.lowered):
            return []
        return [Span(kind, m.start(), m.end()) for m in self.pattern.finditer(text)]
