from pydantic import Field

from llmsuite_common.settings import ServiceSettings


class GuardrailsSettings(ServiceSettings):
    otel_service_name: str = "guardrails"
    port: int = 50061
    guardrails_max_input_bytes: int = Field(64 * 1024, description="Largest accepted input, in UTF-8 bytes.")
    guardrails_max_input_tokens: int = Field(8192, description="Largest accepted input, in approximate tokens.")
    guardrails_deny_terms: list[str] = Field(
        default_factory=list,
        description='Terms that block a request, case-insensitive; JSON list, e.g. ["secret project"].',
    )
