"""The x-guardrails response header: which checks ran on a request and the time they took.

A pure ASGI middleware opens one summary per request in a context variable; the guardrails calls
fill it in; the header is added when the response starts. A streamed response starts before its
output is checked, so its header covers input and context only (the output rail's outcome
reaches the client in the stream itself).
"""

from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-guardrails"


@dataclass
class GuardrailsSummary:
    parts: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[str]] = field(default_factory=dict)
    # Reason codes per surface (what fired), for the request log; never sent in the header.
    codes: dict[str, list[str]] = field(default_factory=dict)
    elapsed_us: int = 0
    policy: str = ""

    def add(
        self,
        surface: str,
        outcome: str,
        checks: list[str],
        elapsed_us: int,
        policy: str = "",
        codes: list[str] | None = None,
    ) -> None:
        self.parts[surface] = outcome
        self.checks[surface] = checks
        self.codes[surface] = codes or []
        self.elapsed_us += elapsed_us
        self.policy = policy or self.policy

    def header(self) -> str:
        fields = [f"{surface}={outcome}" for surface, outcome in self.parts.items()]
        checks = sorted({c for names in self.checks.values() for c in names})
        fields.append("checks=" + ",".join(checks))
        fields.append(f"time_ms={self.elapsed_us / 1000:.3f}")
        if self.policy:
            fields.append(f"policy={self.policy}")
        return "; ".join(fields)


summary_var: ContextVar[GuardrailsSummary | None] = ContextVar("guardrails_summary", default=None)


def current_summary() -> GuardrailsSummary | None:
    return summary_var.get()


class GuardrailsHeaderMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        summary = GuardrailsSummary()
        token = summary_var.set(summary)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start" and summary.parts:
                headers = list(message.get("headers", []))
                headers.append((HEADER.encode(), summary.header().encode("latin-1", "replace")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            summary_var.reset(token)
