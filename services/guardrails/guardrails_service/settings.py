from pathlib import Path

from llmsuite_common.settings import ServiceSettings
from pydantic import Field


class GuardrailsSettings(ServiceSettings):
    otel_service_name: str = "guardrails"
    port: int = 50061
    guardrails_max_input_bytes: int = Field(
        64 * 1024,
        description="Largest accepted input, in UTF-8 bytes (built-in policy; policy files set their own).",
    )
    guardrails_max_input_tokens: int = Field(
        8192, description="Largest accepted input, in approximate tokens (built-in policy)."
    )
    guardrails_deny_terms: list[str] = Field(
        default_factory=list,
        description='Terms that block a request, case-insensitive; JSON list, e.g. ["secret project"] (built-in policy).',
    )
    guardrails_policy_dir: Path | None = Field(
        None,
        description="Directory of policy files (<org_id>.yaml|.json, default.yaml); unset uses the built-in policy.",
    )
    guardrails_policy_reload_seconds: float = Field(
        2.0, gt=0, le=3600, description="How often the policy directory is checked for changed files."
    )
    guardrails_max_schema_bytes: int = Field(
        64 * 1024,
        gt=0,
        description="Largest response_format JSON Schema accepted, in UTF-8 bytes; a larger one is INVALID_ARGUMENT.",
    )
    guardrails_max_schema_depth: int = Field(
        64,
        gt=0,
        le=200,
        description="Deepest nesting of objects and arrays accepted in a response_format JSON Schema.",
    )
