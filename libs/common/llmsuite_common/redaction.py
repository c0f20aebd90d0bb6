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


def redact(text: str, *, keep_emails: bool = False) -> str:
    """Masks credentials, and e-mail addresses unless `keep_emails` (stored full conversations)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if not keep_emails:
        text = _EMAIL[0].sub(_EMAIL[1], text)
    return text
