"""Masks credentials and e-mail addresses in any text bound for logs."""

import re

MASK = "***"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # key=value / "key": "value" forms, whatever the value looks like.
    (
        re.compile(
            r"(?i)((?:api[_-]?key|access[_-]?token|secret|password|passwd|authorization|x-api-key)"
            r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+)?[^\s\"',;}&]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1" + MASK),
    # Provider-style keys: sk-..., sk-proj-..., llmsuite keys share the prefix scheme.
    (re.compile(r"\b(?:sk|rk|pk|llms)[-_][A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"(?i)\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,})"), MASK),
    # Credentials inside URLs: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
]
_EMAIL = (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), MASK + "@" + MASK)


# Substrings that every match of the pattern at the same index contains (lower-cased where the
# pattern ignores case). Every log line passes through here, and most contain none of them: the
# `in` tests cost far less than the regexes' scans, the e-mail one above all. Only for ASCII text:
# ignoring case, the regexes also match non-ASCII letters (U+0130, U+017F) that lower() keeps.
_GATES: list[tuple[tuple[str, ...], bool]] = [
    (("api", "access", "secret", "passw", "authorization"), True),
    (("bearer",), True),
    (("sk-", "sk_", "rk-", "rk_", "pk-", "pk_", "llms-", "llms_"), False),
    (("AKIA",), False),
    (("eyJ",), False),
    (("gh", "xox"), True),
    (("@",), False),
]


def redact(text: str, *, keep_emails: bool = False) -> str:
    """Masks credentials, and e-mail addresses unless `keep_emails` (stored full conversations)."""
    gated = text.isascii()
    folded = text.lower()
    for (pattern, replacement), (needles, ignore_case) in zip(_PATTERNS, _GATES, strict=True):
        haystack = folded if ignore_case else text
        if not gated or any(n in haystack for n in needles):
            text = pattern.sub(replacement, text)
            folded = text.lower()
    if not keep_emails and (not gated or "@" in text):
        text = _EMAIL[0].sub(_EMAIL[1], text)
    return text
