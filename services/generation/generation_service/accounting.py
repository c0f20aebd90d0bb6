"""What one Generate call used and cost, recorded however it ends.

A completed stream is accounted from the upstream's usage (estimated where the
upstream gave none). A stream that ends early (client cancel, deadline, upstream
failure) is still accounted: the completion tokens the upstream actually sent
(one per streamed chunk), so billing matches what was generated and delivered.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llmsuite_common.clock import Clock, monotonic
from llmsuite_common.errors import ServiceError
from llmsuite_common.exemplars import trace_exemplar
from opentelemetry.trace import Span
from prometheus_client import Histogram

from .metrics import GenerationMetrics
from .usage import TokenUsage, resolve_usage

if TYPE_CHECKING:
    from .pool import Committed

log = logging.getLogger(__name__)

# The org label of calls whose request context names no organization.
NO_ORG = "-"

# OpenTelemetry GenAI semantic conventions: every upstream speaks the OpenAI chat API.
GEN_AI_OPERATION = "chat"
GEN_AI_PROVIDER = "openai"
FIRST_TOKEN_EVENT = "gen_ai.first_token"


class Accounting:
    def __init__(
        self,
        model: str,
        contents: Iterable[str],
        span: Span,
        metrics: GenerationMetrics,
        org: str = "",
        started: float | None = None,
        clock: Clock = monotonic,
    ) -> None:
        self.model = model
        self.org = org or NO_ORG
        self._metrics = metrics
        self._contents = list(contents)
        self._span = span
        self.committed: Committed | None = None
        self.content_chunks = 0
        self.tool_chunks = 0
        self.finish_reason = ""
        self.upstream_id = ""
        self.outcome = ""
        self._upstream_usage: Mapping[str, object] | None = None
        self._usage: TokenUsage | None = None
        self._first_token_seen = False
        self._clock = clock
        # `clock` at the call's start; time to first token counts from here, retries included.
        self._started = clock() if started is None else started
        self._last_delta = 0.0
        self._inter_token: Histogram | None = None

    def content_delta(self) -> float:
        """Times one content delta from the upstream and returns the time, for first_token.

        Streams carry many deltas: one clock read each, and the deployment's series is looked up once.
        """
        now = self._clock()
        if self._last_delta:
            series = self._inter_token
            if series is None and self.committed is not None:
                series = self._inter_token = self._metrics.inter_token.labels(self.committed.deployment.name)
            if series is not None:
                series.observe(now - self._last_delta)
        self._last_delta = now
        return now

    def first_token(self, now: float | None = None) -> None:
        """Records the first generated token (at `now`, a time of the clock; else now) once: the
        time to first token with the call's trace as exemplar, and an event on the span."""
        if self._first_token_seen:
            return
        self._first_token_seen = True
        committed = self.committed
        if committed is not None:
            elapsed = (self._clock() if now is None else now) - self._started
            series = self._metrics.time_to_first_token.labels(committed.deployment.name)
            series.observe(elapsed, trace_exemplar(self._span))
        if self._span.is_recording():
            self._span.add_event(
                FIRST_TOKEN_EVENT,
                {"llmsuite.generation.deployment": committed.deployment.name if committed else ""},
            )

    @property
    def usage(self) -> TokenUsage:
        if self._usage is None:
            self._usage = resolve_usage(
                self._upstream_usage, contents=self._contents, deltas=self.content_chunks + self.tool_chunks
            )
        return self._usage

    @property
    def cost_usd(self) -> float:
        if self.committed is None:
            return 0.0
        u = self.usage
        return self.committed.deployment.price.cost(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    def finish(
        self, finish_reason: str, upstream_usage: Mapping[str, object] | None, upstream_id: str
    ) -> None:
        self.finish_reason = finish_reason
        self._upstream_usage = upstream_usage
        self.upstream_id = upstream_id
        self._usage = None
        self.outcome = "completed"

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.outcome = "cancelled"
        elif isinstance(exc, ServiceError):
            self.outcome = f"failed:{exc.code}"
        else:
            self.outcome = "failed"
        self._usage = None

    def close(self) -> None:
        """Logs and records on the span once, at the end of the call."""
        outcome = self.outcome or "cancelled"
        usage = self.usage
        committed = self.committed
        fields: dict[str, Any] = {
            "model": self.model,
            "routed_model": committed.route.model if committed else "",
            "deployment": committed.deployment.name if committed else "",
            "attempts": committed.attempts if committed else 0,
            "outcome": outcome,
            "finish_reason": self.finish_reason,
            # Nothing committed means no upstream generated anything for us to pay for.
            "prompt_tokens": usage.prompt_tokens if committed else 0,
            "completion_tokens": usage.completion_tokens if committed else 0,
            "cached_tokens": usage.cached_tokens,
            "usage_source": "upstream" if self._upstream_usage else "estimate",
            "cost_usd": round(self.cost_usd, 8),
        }
        log.info("generated" if outcome == "completed" else "generation ended early", extra=fields)
        routed = fields["routed_model"] or "-"
        self._metrics.requests.labels(routed, outcome).inc()
        if committed is not None:
            deployment = committed.deployment.name
            exemplar = trace_exemplar(self._span)
            for kind in ("prompt_tokens", "completion_tokens", "cached_tokens"):
                if fields[kind]:
                    kind_label = kind.removesuffix("_tokens")
                    series = self._metrics.tokens.labels(self.org, routed, deployment, kind_label)
                    series.inc(fields[kind], exemplar)
            if fields["cost_usd"]:
                self._metrics.cost.labels(self.org, routed, deployment).inc(self.cost_usd)
        if self._span.is_recording():
            # Counts, names and reasons only: prompts, completions and keys never go on a span.
            attributes: dict[str, str | int | list[str]] = {
                "gen_ai.operation.name": GEN_AI_OPERATION,
                "gen_ai.provider.name": GEN_AI_PROVIDER,
                "gen_ai.system": GEN_AI_PROVIDER,
                "gen_ai.request.model": self.model,
                "gen_ai.response.model": fields["routed_model"],
                "gen_ai.usage.input_tokens": fields["prompt_tokens"],
                "gen_ai.usage.output_tokens": fields["completion_tokens"],
                "llmsuite.generation.deployment": fields["deployment"],
                "llmsuite.generation.attempts": fields["attempts"],
                "llmsuite.generation.outcome": outcome,
            }
            if self.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = [self.finish_reason]
            if self.upstream_id:
                attributes["gen_ai.response.id"] = self.upstream_id
            self._span.set_attributes(attributes)
