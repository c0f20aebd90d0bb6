from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it and adds its own."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    otel_service_name: str = Field("llmsuite", description="Service name in traces, logs and metrics.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(50051, description="Port to listen on.")
    log_level: str = Field("INFO", description="Python log level.")
    otel_exporter_otlp_endpoint: str = Field(
        "",
        description="OTLP collector endpoint; when empty, spans are recorded only for a caller's "
        "sampled `traceparent` (and then dropped).",
    )
    otel_exporter_otlp_protocol: str = Field("grpc", description="`grpc` or `http/protobuf`.")
    # Read by the OpenTelemetry SDK itself from the same variables; declared here so a bad value
    # fails at start and the chart's names stay settings fields.
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(
        "parentbased_always_on", description="Trace sampler; `parentbased_traceidratio` samples new traces."
    )
    otel_traces_sampler_arg: float = Field(
        1.0, ge=0, le=1, description="Share of new traces recorded by the `*traceidratio` samplers."
    )
    drain_seconds: float = Field(
        5.0, description="After SIGTERM: seconds reported NOT_SERVING before the listener closes."
    )
    shutdown_grace_seconds: float = Field(
        20.0,
        description="After draining: seconds in-flight RPCs (streams too) get to finish while no new "
        "call is taken; a service that streams generations needs the longest one.",
    )
    grpc_max_connection_age_seconds: float = Field(
        300.0, description="Clients reconnect after this, so new replicas receive traffic."
    )
    grpc_max_connection_age_grace_seconds: float = Field(
        600.0,
        gt=0,
        description="Once a connection reaches its age: seconds the calls open on it (streams) get to "
        "finish before it is closed; at least the longest generation (`GENERATION_TOTAL_TIMEOUT_SECONDS`).",
    )
    grpc_max_message_bytes: int = Field(4 * 1024 * 1024, description="Largest gRPC message accepted.")
    grpc_auth_public_keys_file: str = Field(
        "",
        description="JWKS file of the public keys that verify service tokens; every gRPC service needs it "
        "(`python -m llmsuite_common.service_keys` makes a key pair).",
    )
    grpc_reflection_open: bool = Field(
        True, description="gRPC reflection answers without a credential (health checks always do)."
    )
    grpc_tls_cert_file: str = Field(
        "",
        description="PEM certificate of this service: its gRPC server certificate and mTLS client certificate; empty is plaintext.",
    )
    grpc_tls_key_file: str = Field("", description="PEM private key of `GRPC_TLS_CERT_FILE`.")
    grpc_tls_ca_file: str = Field(
        "",
        description="PEM CA bundle that verifies peers: the servers this service calls, and clients under mTLS.",
    )
    grpc_tls_require_client_cert: bool = Field(
        False,
        description="gRPC servers accept only clients with a certificate signed by `GRPC_TLS_CA_FILE` (mTLS).",
    )
    metrics_port: int = Field(
        0, description="Port of the Prometheus /metrics listener of a gRPC service; 0 turns it off."
    )
