"""The original size + deny-list checker, kept as a thin view over a policy with only those checks."""

from dataclasses import dataclass, field

from llmsuite_common.rules.policy import (
    InjectionCheck,
    InputChecks,
    PiiCheck,
    Policy,
    SecretsCheck,
    SizeCheck,
    TermsCheck,
    TopicsCheck,
)
from llmsuite_common.rules.tokens import approx_tokens

from .engine import Guard

__all__ = ["Finding", "InputChecker", "InputReport", "approx_tokens", "size_and_deny_policy"]


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


def size_and_deny_policy(*, max_bytes: int, max_tokens: int, deny_terms: list[str]) -> Policy:
    return Policy(
        version="size-and-deny",
        input=InputChecks(
            size=SizeCheck(max_bytes=max_bytes, max_tokens=max_tokens),
            deny=TermsCheck(terms=tuple(deny_terms)),
            topics=TopicsCheck(enabled=False),
            secrets=SecretsCheck(enabled=False),
            pii=PiiCheck(enabled=False),
            injection=InjectionCheck(enabled=False),
        ),
    )


class InputChecker:
    def __init__(self, *, max_bytes: int, max_tokens: int, deny_terms: list[str]) -> None:
        self._guard = Guard(
            size_and_deny_policy(max_bytes=max_bytes, max_tokens=max_tokens, deny_terms=deny_terms)
        )

    def check(self, texts: list[str]) -> InputReport:
        result = self._guard.check_input(texts)
        return InputReport(
            result.input_bytes, result.approx_tokens, [Finding(f.code, f.message) for f in result.findings]
        )
