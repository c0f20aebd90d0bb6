"""Input checks that need no model: size and a deny list."""

import re
from dataclasses import dataclass, field

# English text averages about four bytes per token across common BPE vocabularies;
# counting words and punctuation as well keeps dense code and CJK text from slipping under.
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approx_tokens(text: str) -> int:
    return max(len(_WORDISH.findall(text)), (len(text.encode()) + 3) // 4)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str


@dataclass(frozen=True)
class InputReport:
    input_bytes: int
    approx_tokens: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.findings


class InputChecker:
    def __init__(self, *, max_bytes: int, max_tokens: int, deny_terms: list[str]) -> None:
        self._max_bytes = max_bytes
        self._max_tokens = max_tokens
        terms = [t.strip() for t in deny_terms if t.strip()]
        # Whole-word match so "class" does not block "classification".
        self._deny = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.IGNORECASE)
            if terms
            else None
        )

    def check(self, texts: list[str]) -> InputReport:
        joined = "\n".join(texts)
        size = len(joined.encode())
        findings: list[Finding] = []
        if size > self._max_bytes:
            findings.append(
                Finding("input_too_large", f"input is {size} bytes; the limit is {self._max_bytes}")
            )
            # Counting tokens of an oversized input is wasted work; the verdict is already known.
            return InputReport(size, size // 4, findings)
        tokens = approx_tokens(joined)
        if tokens > self._max_tokens:
            findings.append(
                Finding("input_too_many_tokens", f"input is about {tokens} tokens; the limit is {self._max_tokens}")
            )
        if self._deny is not None:
            hits = sorted({m.group(1).lower() for m in self._deny.finditer(joined)})
            if hits:
                findings.append(Finding("denied_term", f"input contains {len(hits)} denied term(s)"))
        return InputReport(size, tokens, findings)
