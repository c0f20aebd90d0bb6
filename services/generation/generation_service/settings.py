from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from llmsuite_common.settings import ServiceSettings


class ModelRoute(BaseModel):
    """Where one public model name goes upstream, and what it always needs."""

    model_config = {"frozen": True, "extra": "forbid"}

    upstream_model: str = Field(min_length=1)
    # Base models keep writing past the answer unless told where a turn ends.
    stop: list[str] = Field(default_factory=list)
    # Default when the request gives none, and a ceiling when it does.
    max_tokens: int | None = Field(None, gt=0)


class GenerationSettings(ServiceSettings):
    otel_service_name: str = "generation"
    port: int = 50063
    generation_upstream_base_url: str = Field(
        "http://127.0.0.1:8081/v1",
        description="OpenAI-compatible base URL (ending in /v1) of the inference server; no credentials in it.",
    )
    generation_upstream_api_key: SecretStr = Field(
        SecretStr(""), description="Sent to the upstream as `Authorization: Bearer`; none when empty."
    )
    generation_models: dict[str, ModelRoute] = Field(
        # Written as the JSON an operator would set; validate_default turns it into ModelRoutes.
        default_factory=lambda: {"gemma-3-270m": {"upstream_model": "gemma-3-270m", "stop": ["\n###"]}},
        validate_default=True,
        description=(
            'JSON: public model name -> {"upstream_model": name upstream, "stop": stop sequences always '
            'added to the request\'s, "max_tokens": default and ceiling (optional)}.'
        ),
    )
    generation_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait to connect to the upstream (or for a pooled connection)."
    )
    generation_read_timeout_seconds: float = Field(
        60.0, gt=0, description="Longest silence between two pieces of the upstream's response."
    )
    generation_max_connections: int = Field(
        100, gt=0, description="Most concurrent connections to the upstream from this process."
    )

    @field_validator("generation_upstream_base_url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        # URLs end up in logs and span attributes; a key must not ride along.
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use GENERATION_UPSTREAM_API_KEY")
        return value

    @field_validator("generation_models")
    @classmethod
    def _at_least_one_model(cls, value: dict[str, ModelRoute]) -> dict[str, ModelRoute]:
        if not value:
            raise ValueError("configure at least one model")
        return value
