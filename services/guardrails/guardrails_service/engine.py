"""A policy compiled into checks: input (cheapest first), retrieved context, and output scanning.

Pure code with no gRPC, so every rule is unit-tested directly. The servicer turns results into
protobuf and metrics.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmsuite_common.rules.detectors import Span, find_pii, find_secrets, redact
from llmsuite_common.rules.findings import CheckRun, Finding
from llmsuite_common.rules.output_scan import OutputScanner, redaction_label
from llmsuite_common.rules.policy import CheckConfig, InjectionCheck, Policy, TermsCheck, TopicsCheck
from llmsuite_common.rules.terms import Terms
from llmsuite_common.rules.tokens import approx_tokens

from .injection import detect, score_injection

log = logging.getLogger(__name__)

# Messages from these roles are written by the calling application, not by its end users, so the
# injection heuristics (which would flag a system prompt's own "you are now ...") skip them.
TRUSTED_ROLES = frozenset({"system", "developer"})


@dataclass
class InputResult:
    input_bytes: int
    approx_tokens: int
    findings: list[Finding] = field(default_factory=list)
    timings: list[CheckRun] = field(default_factory=list)
    # Per message, only when a redact action changed something.
    redacted: list[str] | None = None
    elapsed_us: int = 0
    # The untrusted text whose injection score was inconclusive, for the model classifier.
    inconclusive: str | None = None

    @property
    def blocked(self) -> bool:
        return any(f.action == "block" for f in self.findings)


@dataclass(frozen=True)
class ChunkResult:
    dropped: bool
    findings: list[Finding]
    # Its injection score was inconclusive and the policy enables the model classifier.
    inconclusive: bool = False


def _kinds(spans: Sequence[Span]) -> str:
    return ", ".join(sorted({s.kind for s in spans}))


class Guard:
    """One policy, compiled. Immutable, so a hot reload swaps in a new Guard atomically."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.version = policy.fingerprint()
        inp = policy.input
        self._deny = Terms(inp.deny.terms)
        self._topics = [(rule.name, Terms(rule.terms)) for rule in inp.topics.rules]
        self._ctx_deny = Terms(policy.context.deny.terms)
        # The output rules, for the rail (here in CheckOutputStream, or in the gateway).
        self.output = OutputScanner(policy.output, self.version)

    # ---- input -------------------------------------------------------------------------------

    def check_input(self, texts: Sequence[str], roles: Sequence[str] | None = None) -> InputResult:
        started = time.perf_counter_ns()
        roles = roles or ["user"] * len(texts)
        inp = self.policy.input
        joined = "\n".join(texts)
        size = len(joined.encode())
        result = InputResult(size, 0)
        current = list(texts)
        lowered = [t.lower() for t in current]
        changed = False

        # Cheapest first, and a block ends the run: later checks cannot change the verdict.
        if inp.size.enabled:
            self._run(result, "size", inp.size, lambda: self._size(result, joined, size))
        steps: list[tuple[str, CheckConfig, Callable[[], bool]]] = []
        if inp.deny.enabled:
            steps.append(("deny", inp.deny, lambda: self._terms(result, current, lowered, inp.deny)))
        if inp.topics.enabled and self._topics:
            steps.append(
                ("topics", inp.topics, lambda: self._topic_rules(result, current, lowered, inp.topics))
            )
        if inp.secrets.enabled:
            steps.append(("secrets", inp.secrets, lambda: self._secrets(result, current)))
        if inp.pii.enabled:
            steps.append(("pii", inp.pii, lambda: self._pii(result, current)))
        if inp.injection.enabled:
            steps.append(
                ("injection", inp.injection, lambda: self._injection(result, texts, roles, inp.injection))
            )
        for name, cfg, step in steps:
            if result.blocked:
                break
            changed = self._run(result, name, cfg, step) or changed
        if changed and not result.blocked:
            result.redacted = current
        result.elapsed_us = (time.perf_counter_ns() - started) // 1000
        return result

    def _run(
        self, result: InputResult, name: str, cfg: CheckConfig | object, step: Callable[[], bool]
    ) -> bool:
        """Runs one check; returns whether it changed (redacted) the input."""
        before = len(result.findings)
        t0 = time.perf_counter_ns()
        failed = False
        changed = False
        try:
            changed = bool(step())
        except Exception:  # noqa: BLE001 - the policy decides what a failing check means
            failed = True
            log.exception("guardrails check failed", extra={"check": name})
            if not getattr(cfg, "fail_open", False):
                result.findings.append(
                    Finding(
                        name, "check_failed", f"the {name} check failed and the policy fails closed", "block"
                    )
                )
        elapsed = (time.perf_counter_ns() - t0) // 1000
        budget_us = getattr(cfg, "budget_ms", 0) * 1000
        result.timings.append(
            CheckRun(
                name, elapsed, len(result.findings) > before, bool(budget_us and elapsed > budget_us), failed
            )
        )
        return changed

    def _size(self, result: InputResult, joined: str, size: int) -> bool:
        cfg = self.policy.input.size
        if size > cfg.max_bytes:
            result.findings.append(
                Finding(
                    "size", "input_too_large", f"input is {size} bytes; the limit is {cfg.max_bytes}", "block"
                )
            )
            # Counting tokens of an oversized input is wasted work; the verdict is already known.
            result.approx_tokens = size // 4
            return False
        # Every counted token is at least one byte, so an input with no more bytes than the token
        # limit cannot exceed it: the byte-based estimate is enough and spares the count.
        result.approx_tokens = approx_tokens(joined) if size > cfg.max_tokens else (size + 3) // 4
        if result.approx_tokens > cfg.max_tokens:
            result.findings.append(
                Finding(
                    "size",
                    "input_too_many_tokens",
                    f"input is about {result.approx_tokens} tokens; the limit is {cfg.max_tokens}",
                    "block",
                )
            )
        return False

    def _apply_spans(
        self,
        result: InputResult,
        current: list[str],
        spans_per_text: list[list[Span]],
        finding: Callable[[int, list[Span]], Finding],
    ) -> bool:
        every = [s for spans in spans_per_text for s in spans]
        if not every:
            return False
        f = finding(len(every), every)
        result.findings.append(f)
        if f.action != "redact":
            return False
        for i, spans in enumerate(spans_per_text):
            if spans:
                current[i] = redact(current[i], spans, redaction_label)
        return True

    def _terms(self, result: InputResult, current: list[str], lowered: list[str], cfg: TermsCheck) -> bool:
        spans = [self._deny.spans(t, low, "denied_term") for t, low in zip(current, lowered, strict=True)]
        return self._apply_spans(
            result,
            current,
            spans,
            lambda n, _: Finding(
                "deny", "denied_term", f"input contains {n} denied term(s)", cfg.action, count=n
            ),
        )

    def _topic_rules(
        self, result: InputResult, current: list[str], lowered: list[str], cfg: TopicsCheck
    ) -> bool:
        changed = False
        for name, terms in self._topics:
            spans = [terms.spans(t, low, "topic") for t, low in zip(current, lowered, strict=True)]
            changed = (
                self._apply_spans(
                    result,
                    current,
                    spans,
                    lambda n, _, name=name: Finding(  # type: ignore[misc]  # name bound per topic
                        "topics",
                        "restricted_topic",
                        f"input touches the restricted topic '{name}'",
                        cfg.action,
                        count=n,
                    ),
                )
                or changed
            )
        return changed

    def _secrets(self, result: InputResult, current: list[str]) -> bool:
        cfg = self.policy.input.secrets
        spans = [
            find_secrets(t, min_entropy=cfg.min_entropy, opaque_min_entropy=cfg.opaque_min_entropy)
            for t in current
        ]
        return self._apply_spans(
            result,
            current,
            spans,
            lambda n, every: Finding(
                "secrets", "secret", f"input contains {n} secret(s): {_kinds(every)}", cfg.action, count=n
            ),
        )

    def _pii(self, result: InputResult, current: list[str]) -> bool:
        cfg = self.policy.input.pii
        spans = [find_pii(t, cfg.kinds) for t in current]
        return self._apply_spans(
            result,
            current,
            spans,
            lambda n, every: Finding(
                "pii", "pii", f"input contains {n} PII item(s): {_kinds(every)}", cfg.action, count=n
            ),
        )

    def _injection(
        self, result: InputResult, texts: Sequence[str], roles: Sequence[str], cfg: InjectionCheck
    ) -> bool:
        untrusted = "\n".join(t for t, r in zip(texts, roles, strict=True) if r not in TRUSTED_ROLES)
        finding = injection_finding(untrusted, cfg, subject="input")
        if finding is not None:
            result.findings.append(finding)
            if finding.action == "warn" and cfg.classifier.enabled:
                result.inconclusive = untrusted
        return False

    # ---- retrieved context -------------------------------------------------------------------

    def check_chunks(self, texts: Sequence[str]) -> tuple[list[ChunkResult], list[CheckRun]]:
        ctx = self.policy.context
        results: list[ChunkResult] = []
        inj_us = deny_us = 0
        fired_inj = fired_deny = False
        for text in texts:
            findings: list[Finding] = []
            t0 = time.perf_counter_ns()
            if ctx.injection.enabled:
                f = injection_finding(text, ctx.injection, subject="retrieved passage")
                if f is not None:
                    findings.append(f)
                    fired_inj = True
            t1 = time.perf_counter_ns()
            if ctx.deny.enabled:
                n = len(self._ctx_deny.spans(text, text.lower(), "denied_term"))
                if n:
                    findings.append(
                        Finding(
                            "deny",
                            "denied_term",
                            f"retrieved passage contains {n} denied term(s)",
                            ctx.deny.action,
                            count=n,
                        )
                    )
                    fired_deny = True
            inj_us += (t1 - t0) // 1000
            deny_us += (time.perf_counter_ns() - t1) // 1000
            inconclusive = ctx.injection.classifier.enabled and any(
                f.check == "injection" and f.action == "warn" for f in findings
            )
            results.append(ChunkResult(any(f.action == "block" for f in findings), findings, inconclusive))
        timings = []
        if ctx.injection.enabled:
            timings.append(CheckRun("injection", inj_us, fired_inj, inj_us > ctx.injection.budget_ms * 1000))
        if ctx.deny.enabled:
            timings.append(CheckRun("deny", deny_us, fired_deny, deny_us > ctx.deny.budget_ms * 1000))
        return results, timings


def injection_finding(text: str, cfg: InjectionCheck, *, subject: str) -> Finding | None:
    if not text:
        return None
    verdict = detect(text, cfg.detector, score_injection)
    if verdict.score >= cfg.threshold:
        action = cfg.action if cfg.action != "redact" else "block"
    elif verdict.score >= cfg.warn_threshold:
        # Inconclusive: the model classifier decides, when the policy enables one.
        action = "warn"
    else:
        return None
    return Finding(
        "injection",
        "prompt_injection",
        f"{subject} looks like a prompt injection (detector {verdict.detector}, score {verdict.score:.2f}; "
        f"signals: {', '.join(verdict.signals) or 'none'})",
        action,
        score=verdict.score,
        count=len(verdict.signals),
    )


def classifier_finding(warned: Finding, p: float, cfg: InjectionCheck, *, subject: str) -> Finding:
    """An inconclusive finding as the model classifier settles it (its probability p)."""
    if p < cfg.classifier.threshold:
        return Finding(
            "injection",
            "prompt_injection",
            f"{warned.message}; classifier score {p:.2f}, below its threshold",
            "warn",
            score=warned.score,
            count=warned.count,
        )
    return Finding(
        "injection",
        "prompt_injection",
        f"{subject} looks like a prompt injection (detector classifier, score {p:.2f})",
        cfg.action if cfg.action != "redact" else "block",
        score=round(p, 4),
        count=warned.count,
    )
