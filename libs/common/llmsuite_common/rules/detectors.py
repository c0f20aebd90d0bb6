"""Pattern detectors for PII and secrets; validators (Luhn, IBAN mod-97) cut false positives.

Each detector returns spans only; redaction and verdicts are the engine's business, and the
matched text never leaves this module in a message.
"""

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import ahocorasick_rs


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths of the countries most often seen; other countries are accepted on mod-97 alone.
IBAN_LENGTHS = {
    "AD": 24,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
}


def iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def shannon_entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w-])"
)
# Digit runs with optional single separators; the digit count and context decide what they are.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_US_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?![DFIQUV])[A-CEGHJ-PR-TW-Z](?![DFIQUVO])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)

_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6)")


Windows = list[tuple[int, int]]


def _emails(text: str, windows: Windows) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span("email", m.start(), m.end())


def _in_windows(pattern: re.Pattern[str], text: str, windows: Windows) -> Iterable[re.Match[str]]:
    # Lookarounds still see the text just outside a window, so boundaries behave as on the whole text.
    for start, end in windows:
        yield from pattern.finditer(text, start, end)


def _cards(text: str, windows: Windows) -> Iterable[Span]:
    for m in _in_windows(_CARD, text, windows):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits):
            yield Span("card", m.start(), m.end())


def _ibans(text: str, windows: Windows) -> Iterable[Span]:
    # Letters may run long before an IBAN's digits (GB82WEST...), so this one scans the whole text.
    for m in _IBAN.finditer(text):
        raw = m.group()
        # A trailing word in capitals can be swallowed by the grouping; drop groups until valid.
        for _ in range(8):
            if iban_ok(raw.replace(" ", "")):
                yield Span("iban", m.start(), m.start() + len(raw))
                break
            cut = raw.rfind(" ")
            if cut <= 4:
                break
            raw = raw[:cut]


def _national_ids(text: str, windows: Windows) -> Iterable[Span]:
    for pattern in (_US_SSN, _UK_NINO):
        for m in _in_windows(pattern, text, windows):
            yield Span("national_id", m.start(), m.end())


def _phones(text: str, windows: Windows) -> Iterable[Span]:
    for m in _in_windows(_PHONE, text, windows):
        raw = m.group()
        digits = sum(ch.isdigit() for ch in raw)
        # Bare digit runs are too often order numbers or amounts: a phone has a "+" or separators.
        if _DOTTED_QUAD.fullmatch(raw):
            continue
        if 9 <= digits <= 15 and (raw.startswith("+") or re.search(r"[ .()-]", raw)):
            yield Span("phone", m.start(), m.end())


PII_DETECTORS: dict[str, Callable[[str, Windows], Iterable[Span]]] = {
    "email": _emails,
    "card": _cards,
    "iban": _ibans,
    "national_id": _national_ids,
    "phone": _phones,
}
# Specific before generic: a card or IBAN number also looks like a phone number.
PII_ORDER = ("email", "iban", "card", "national_id", "phone")


# Every number-like PII (cards, phones, IBANs, national ids) holds a run of at least six digits and
# separators; one pass of this cheap pattern finds the few places the detailed patterns must look.
_NUMBERISH = re.compile(r"\d[\d ().+-]{4,}\d")
# Room around a run for a "+", "(" or a national id's letters.
_WINDOW_MARGIN = 6


def find_pii(text: str, kinds: Iterable[str]) -> list[Span]:
    wanted = set(kinds)
    windows = [
        (max(0, m.start() - _WINDOW_MARGIN), m.end() + _WINDOW_MARGIN) for m in _NUMBERISH.finditer(text)
    ]
    if not windows and "@" not in text:
        # Prose, the common case: no email without "@", no other kind without a run of digits.
        return []
    spans: set[Span] = set()
    for kind in PII_ORDER:
        if kind in wanted and ("@" in text if kind == "email" else windows):
            spans.update(PII_DETECTORS[kind](text, windows))
    return without_overlaps(sorted(spans, key=lambda s: (PII_ORDER.index(s.kind), s.start)))


# (kind, literal that every match contains, pattern): the literal gates the regex.
_SECRET_PATTERNS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("private_key", ("PRIVATE KEY",), re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key", ("AKIA", "ASIA"), re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    (
        "github_token",
        ("gh", "github_pat_"),
        re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    ),
    ("slack_token", ("xox",), re.compile(r"(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", ("AIza",), re.compile(r"(?<!\w)AIza[0-9A-Za-z_-]{35}")),
    ("stripe_key", ("k_live_", "k_test_"), re.compile(r"(?<!\w)[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("api_key", ("sk-",), re.compile(r"(?<![\w-])sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}")),
    ("jwt", ("eyJ",), re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")),
)
_ASSIGNED = re.compile(
    r"(?i)(?<![\w-])(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|password|passwd|pwd)"
    r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
)
_KEY_NAMES = ("key", "secret", "token", "passw", "pwd")
_LONG_RUN = re.compile(r"\S{32}")
_OPAQUE = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_=-]{32,}(?![\w+/=-])")


def _looks_random(token: str, min_entropy: float) -> bool:
    classes = sum(
        (any(c.islower() for c in token), any(c.isupper() for c in token), any(c.isdigit() for c in token))
    )
    return classes >= 2 and shannon_entropy(token) >= min_entropy


# One Aho-Corasick pass finds which literals occur, so only those patterns run.
_LITERALS = ahocorasick_rs.AhoCorasick(sorted({lit for _, lits, _ in _SECRET_PATTERNS for lit in lits}))
_KEY_NAME_AUTOMATON = ahocorasick_rs.AhoCorasick(list(_KEY_NAMES))


def find_secrets(text: str, *, min_entropy: float = 3.0, opaque_min_entropy: float = 4.5) -> list[Span]:
    present = set(_LITERALS.find_matches_as_strings(text, overlapping=True))
    spans = [
        Span(kind, m.start(), m.end())
        for kind, literals, p in _SECRET_PATTERNS
        if present.intersection(literals)
        for m in p.finditer(text)
    ]
    if _KEY_NAME_AUTOMATON.find_matches_as_indexes(text.lower()):
        for m in _ASSIGNED.finditer(text):
            if _looks_random(m.group(1), min_entropy):
                spans.append(Span("assigned_secret", m.start(1), m.end(1)))
    # An opaque token is a run of 32 or more non-space characters; prose has none.
    if _LONG_RUN.search(text) is None:
        return without_overlaps(spans)
    for m in _OPAQUE.finditer(text):
        token = m.group()
        # Hex digests and base64 of ordinary words stay below this; random keys do not.
        if _looks_random(token, opaque_min_entropy) and not token.isdigit():
            spans.append(Span("high_entropy_string", m.start(), m.end()))
    return without_overlaps(spans)


def without_overlaps(spans: list[Span]) -> list[Span]:
    """Keeps the first-listed span where two overlap (detectors are listed most specific first)."""
    kept: list[Span] = []
    for span in spans:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def redact(text: str, spans: Iterable[Span], label: Callable[[Span], str]) -> str:
    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < pos:
            continue
        out.append(text[pos : span.start])
        out.append(label(span))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
