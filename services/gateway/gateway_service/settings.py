from llmsuite_common.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator


class GatewaySettings(ServiceSettings):
    otel_service_name: str = Field("gateway", description="Service name in traces, logs and metrics.")
    port: int = Field(8080, description="HTTP port to listen on.")
    gateway_api_key: SecretStr = Field(
        SecretStr(""),
        description="Bearer key clients must send on /v1/*; required: the gateway will not start without it.",
    )
    gateway_org_id: str = Field("default", description="Tenant the configured API key belongs to.")
    gateway_guardrails_target: str = Field(
        "dns:///127.0.0.1:50061", description="gRPC target of the guardrails service."
    )
    gateway_retrieval_target: str = Field(
        "dns:///127.0.0.1:50062", description="gRPC target of the retrieval service."
    )
    gateway_generation_target: str = Field(
        "dns:///127.0.0.1:50063", description="gRPC target of the generation service."
    )
    gateway_request_timeout_seconds: float = Field(
        120.0, gt=0, description="Overall deadline of one request, shared by every backend call it makes."
    )
    gateway_max_body_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest accepted request body; larger bodies get 413."
    )
    gateway_keepalive_seconds: float = Field(
        10.0,
        gt=0,
        description="Interval of SSE keep-alive comments while a stream waits for its first token.",
    )
    gateway_default_model: str = Field(
        "gemma-3-270m", description="Model used when a request names none; empty makes `model` required."
    )
    gateway_readiness_timeout_seconds: float = Field(
        1.0, gt=0, description="Deadline of each backend health check behind /readyz."
    )
    gateway_openapi_enabled: bool = Field(
        True, description="Serve /openapi.json and /docs; turn off to keep the schema off a public listener."
    )

    @field_validator("gateway_api_key")
    @classmethod
    def _key_is_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("GATEWAY_API_KEY is empty; set it to the bearer key clients must send")
        return value
