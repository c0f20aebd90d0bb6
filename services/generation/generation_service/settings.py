from urllib.parse import urlsplit

from llmsuite_common.settings import ServiceSettings
from pydantic import BaseModel, Field, SecretStr, field_validator


class ModelRoute(BaseModel):
    """Where one public model name goes upstream, and what it always needs."""

    model_config = {"frozen": True, "extra": "forbid"}

    upstream_model: str = Field(min_length=1)
    # Base models keep writing past the answer unless told where a turn ends.
    stop: list[str] = Field(default_factory=list)
    # Default when the request gives none, and a ceiling when it does.
    max_tokens: int | None = Field(None, gt=0)
    # The upstream model accepts images (OpenAI `image_url` content parts).
    vision: bool = False


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
    generation_upstream_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "JSON: key name -> API key, for routing-file deployments that say `api_key_ref: <name>` "
            "(one Secret-backed variable for every upstream key)."
        ),
    )
    generation_models: dict[str, ModelRoute] = Field(
        # Written as the JSON an operator would set; validate_default turns it into ModelRoutes.
        default_factory=lambda: {"gemma-3-270m": {"upstream_model": "gemma-3-270m", "stop": ["\n###"]}},
        validate_default=True,
        description=(
            'JSON: public model name -> {"upstream_model": name upstream, "stop": stop sequences always '
            'added to the request\'s, "max_tokens": default and ceiling (optional), "vision": accepts images '
            "(optional, false)}."
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
    generation_total_timeout_seconds: float = Field(
        600.0, gt=0, description="Longest one upstream request may last, end to end (without a routing file)."
    )
    generation_routing_file: str = Field(
        "",
        description=(
            "Path of the YAML/JSON routing file (models, aliases, deployments, fallbacks, auto, per-org caps); "
            "re-read when it changes. Empty: route GENERATION_MODELS to GENERATION_UPSTREAM_BASE_URL."
        ),
    )
    generation_routing_reload_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often the routing file is checked for changes."
    )
    generation_max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Most upstream attempts per request, fallbacks included (only before the first token).",
    )
    generation_backoff_base_seconds: float = Field(
        0.05,
        ge=0,
        le=60,
        description="Full-jitter backoff: the first retry waits up to this long, doubling after.",
    )
    generation_backoff_max_seconds: float = Field(
        2.0, ge=0, le=600, description="Full-jitter backoff: the longest wait before any retry."
    )
    generation_retry_budget_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description=(
            "Retry budget: retries may add at most this percentage to the requests of the window "
            "(plus the reserve); failures past it go to the caller."
        ),
    )
    generation_retry_budget_window_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Retry budget: the sliding window its requests and retries are counted over.",
    )
    generation_retry_budget_min_per_second: float = Field(
        1.0,
        ge=0,
        le=1000,
        description="Retry budget: retries allowed per second of the window whatever the traffic (the reserve).",
    )
    generation_breaker_failures: int = Field(
        10, ge=1, le=1000, description="Consecutive failures that open a deployment's circuit breaker."
    )
    generation_breaker_open_seconds: float = Field(
        10.0, gt=0, le=3600, description="How long an open breaker fails fast before one half-open probe."
    )
    generation_max_retry_after_seconds: float = Field(
        0.0,
        ge=0,
        le=3600,
        description=(
            "Longest upstream Retry-After this service waits out itself (within the deadline) when no other "
            "deployment can serve; 0 passes the 429 or 503 and its Retry-After straight to the caller."
        ),
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
