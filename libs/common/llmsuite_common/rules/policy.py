"""Policies as data: which checks run, thresholds, actions, fail mode and latency budget.

A policy is a YAML or JSON document per org (see services/guardrails/README.md); it is parsed into these models
and never executed. Unknown keys are errors, so a typo cannot silently turn a check off.
"""

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["block", "redact", "warn"]
PiiKind = Literal["email", "phone", "card", "iban", "national_id"]
ALL_PII: tuple[PiiKind, ...] = ("email", "phone", "card", "iban", "national_id")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckConfig(_Strict):
    enabled: bool = True
    action: Action = "block"
    # When the check itself fails (a bug, a pathological input): pass the text on (True) or block.
    fail_open: bool = False
    # Per-call time the check is expected to fit in; overruns are counted, not cut short.
    budget_ms: float = Field(1.0, gt=0)


class SizeCheck(_Strict):
    enabled: bool = True
    max_bytes: int = Field(64 * 1024, gt=0)
    max_tokens: int = Field(8192, gt=0)
    fail_open: bool = False
    budget_ms: float = Field(0.2, gt=0)


class PiiCheck(CheckConfig):
    action: Action = "redact"
    kinds: tuple[PiiKind, ...] = ALL_PII


class SecretsCheck(CheckConfig):
    action: Action = "redact"
    # Shannon bits per character above which `password=...` style values count as secrets.
    min_entropy: float = Field(3.0, ge=0)
    # Same, for long bare tokens with no telling key name around them.
    opaque_min_entropy: float = Field(4.5, ge=0)


class ModelClassifier(_Strict):
    """A model classifier a deployment serves (e.g. a Prompt Guard model behind an HTTP endpoint),
    asked only about inconclusive scores and only within its latency budget. Off by default."""

    enabled: bool = False
    # POST {"text": ...}; the reply is {"score": p} or a list of {"label", "score"} (the
    # text-classification shape), whose injection/jailbreak labels give p.
    url: str = Field("", max_length=2048)
    budget_ms: float = Field(50.0, gt=0, le=10_000)
    # p at or above which an inconclusive text gets the check's action; below, it only warns.
    threshold: float = Field(0.5, gt=0, le=1)


class InjectionCheck(CheckConfig):
    # Score at or above which the action applies; between warn_threshold and threshold the
    # verdict is inconclusive and only warns (or goes to the model classifier, when enabled).
    threshold: float = Field(0.7, gt=0, le=1)
    warn_threshold: float = Field(0.4, gt=0, le=1)
    # patterns: the hand-written rules alone; learned: the n-gram model alone; both: the higher.
    detector: Literal["patterns", "learned", "both"] = "both"
    classifier: ModelClassifier = ModelClassifier()


class TermsCheck(CheckConfig):
    terms: tuple[str, ...] = ()


class TopicRule(_Strict):
    name: str = Field(min_length=1, max_length=64)
    terms: tuple[str, ...] = Field(min_length=1)


class TopicsCheck(CheckConfig):
    rules: tuple[TopicRule, ...] = ()


class InputChecks(_Strict):
    size: SizeCheck = SizeCheck()
    deny: TermsCheck = TermsCheck()
    topics: TopicsCheck = TopicsCheck()
    secrets: SecretsCheck = SecretsCheck()
    pii: PiiCheck = PiiCheck()
    injection: InjectionCheck = InjectionCheck()


class ContextChecks(_Strict):
    # A chunk whose score reaches the threshold is dropped (action block) or only reported (warn).
    injection: InjectionCheck = InjectionCheck()
    deny: TermsCheck = TermsCheck(enabled=False)


class OutputChecks(_Strict):
    # verify_first: text is released only once `hold_back_tokens` newer tokens have passed the
    # checks (or it has waited `hold_back_ms`), so a violation stops the stream before its text
    # goes out. stream_first: text goes out at once; violations are flagged after the fact.
    mode: Literal["verify_first", "stream_first"] = "verify_first"
    hold_back_tokens: int = Field(0, ge=0, le=4096)
    # 0 turns the time limit off: text then waits only for newer tokens (or the end).
    hold_back_ms: float = Field(0, ge=0)
    deny: TermsCheck = TermsCheck()
    secrets: SecretsCheck = SecretsCheck(action="block")
    pii: PiiCheck = PiiCheck()


class StructuredOutput(_Strict):
    # After an answer that is invalid even once repaired, the gateway may re-ask the model with the
    # validation errors this many times, spending at most this many completion tokens on re-asks.
    max_reasks: int = Field(1, ge=0, le=5)
    reask_max_tokens: int = Field(2048, ge=0, le=1_000_000)


class Policy(_Strict):
    version: str = Field("builtin", min_length=1, max_length=64)
    input: InputChecks = InputChecks()
    context: ContextChecks = ContextChecks()
    output: OutputChecks = OutputChecks()
    structured: StructuredOutput = StructuredOutput()

    def fingerprint(self) -> str:
        """version plus a short digest, so two edits that forget to bump `version` still differ."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]
        return f"{self.version}+{digest}"
