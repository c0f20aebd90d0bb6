"""The output policy compiled into one scan: deny terms, secrets and PII spans with their actions."""

import hashlib
from dataclasses import dataclass

from .detectors import Span, find_pii, find_secrets
from .policy import OutputChecks
from .terms import Terms


@dataclass(frozen=True)
class OutputMatch:
    span: Span
    check: str
    action: str


def redaction_label(span: Span) -> str:
    return f"[REDACTED:{span.kind.upper()}]"


class OutputScanner:
    """One organization's output rules, compiled. Immutable: a policy change builds a new one."""

    def __init__(self, output: OutputChecks, version: str = "") -> None:
        self.output = output
        # The policy version this scanner was built from (the whole policy's fingerprint).
        self.version = (
            version or "output+" + hashlib.sha256(output.model_dump_json().encode()).hexdigest()[:8]
        )
        self._deny = Terms(output.deny.terms)

    def scan(self, text: str) -> list[OutputMatch]:
        """Every output rule's matches in `text`, for the streaming rail's window."""
        out = self.output
        matches: list[OutputMatch] = []
        if out.deny.enabled and self._deny.pattern is not None:
            matches += [
                OutputMatch(s, "deny", out.deny.action)
                for s in self._deny.spans(text, text.lower(), "denied_term")
            ]
        if out.secrets.enabled:
            spans = find_secrets(
                text, min_entropy=out.secrets.min_entropy, opaque_min_entropy=out.secrets.opaque_min_entropy
            )
            matches += [OutputMatch(s, "secrets", out.secrets.action) for s in spans]
        if out.pii.enabled:
            matches += [OutputMatch(s, "pii", out.pii.action) for s in find_pii(text, out.pii.kinds)]
        return matches
