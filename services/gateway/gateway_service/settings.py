from typing import Literal

from llmsuite_common.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator

from .edge.pricing import ModelPrice


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
    gateway_token_signing_key_file: str = Field(
        "",
        description="PEM Ed25519 private key that signs service tokens for backend calls and "
        "`POST /v1/auth/token`; required (`python -m llmsuite_common.service_keys`).",
    )
    gateway_token_ttl_seconds: float = Field(
        300.0, ge=30, le=3600, description="Lifetime of a service token the gateway signs."
    )
    gateway_request_timeout_seconds: float = Field(
        120.0, gt=0, description="Overall deadline of one request, shared by every backend call it makes."
    )
    gateway_max_body_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest accepted request body; larger bodies get 413."
    )
    gateway_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest a client may take to send a request's headers, from connecting (or from "
        "the first byte of the next request on a kept-alive connection); a slower connection is closed.",
    )
    gateway_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest a client may take to send a request body once its headers are in; "
        "a slower client gets 408 and the connection is closed.",
    )
    gateway_max_connections: int = Field(
        4096,
        gt=0,
        description="Open client connections (HTTP and WebSocket) per replica; a connection beyond "
        "this gets 503 with Retry-After and is closed.",
    )
    gateway_ws_idle_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="A chat WebSocket with no request in progress is closed (1000) after this long "
        "without a frame from the client.",
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
    gateway_backend_health_interval_seconds: float = Field(
        10.0,
        ge=0,
        description="Interval of the background backend health checks behind the "
        "llmsuite_gateway_backend_serving gauge; 0 checks only when /readyz is asked.",
    )
    gateway_openapi_enabled: bool = Field(
        True, description="Serve /openapi.json and /docs; turn off to keep the schema off a public listener."
    )

    gateway_redis_url: SecretStr = Field(
        SecretStr(""),
        description="Redis URL for limits, spend counters and idempotency keys, shared by replicas; run it "
        "with `maxmemory-policy noeviction`; empty keeps them in-process (one replica only).",
    )
    gateway_redis_timeout_seconds: float = Field(
        1.0,
        gt=0,
        description="Deadline of each Redis command and of connecting to Redis; a slower Redis "
        "counts as down. Waiting for a pooled connection behind this replica's own requests does not.",
    )
    gateway_cache_redis_url: SecretStr = Field(
        SecretStr(""),
        description="Redis URL of the result cache: its own instance (maxmemory with allkeys-lru), never the "
        "GATEWAY_REDIS_URL one, whose spend counters and limits must not be evicted; empty keeps the cache "
        "in-process (LRU, per replica).",
    )
    gateway_rate_limit_failure_mode: Literal["open", "closed"] = Field(
        "open",
        description="When Redis is unreachable: `open` admits requests unlimited, `closed` answers 503.",
    )
    gateway_rate_limit_window_seconds: float = Field(
        60.0, gt=0, description="Window of the per-minute limits (sliding); 60 unless testing."
    )
    gateway_trusted_proxy_hops: int = Field(
        0,
        ge=0,
        description="Proxies in front of the gateway whose X-Forwarded-For entries are trusted; "
        "0 uses the socket's peer address.",
    )
    gateway_ip_rpm: int = Field(0, ge=0, description="Requests per minute per client IP; 0 = unlimited.")
    gateway_key_rpm: int = Field(
        0, ge=0, description="Requests per minute of the configured API key; 0 = unlimited."
    )
    gateway_key_tpm: int = Field(
        0, ge=0, description="Tokens per minute of the configured API key; 0 = unlimited."
    )
    gateway_key_max_streams: int = Field(
        0, ge=0, description="Concurrent streams of the configured API key; 0 = unlimited."
    )
    gateway_org_rpm: int = Field(
        0, ge=0, description="Requests per minute of the configured key's organization; 0 = unlimited."
    )
    gateway_org_tpm: int = Field(
        0, ge=0, description="Tokens per minute of the configured key's organization; 0 = unlimited."
    )
    gateway_reserved_completion_tokens: int = Field(
        1024,
        gt=0,
        description="Completion tokens reserved against token limits when a request sets no max_tokens.",
    )
    gateway_idempotency_ttl_seconds: float = Field(
        86400.0, gt=0, description="How long an Idempotency-Key and its stored response are kept."
    )

    gateway_database_url: SecretStr = Field(
        SecretStr(""),
        description="PostgreSQL DSN for organizations, API keys and usage; empty uses the embedded "
        "server when GATEWAY_PGSERVER_DATA_DIR is set, else only GATEWAY_API_KEY is accepted.",
    )
    gateway_pgserver_data_dir: str = Field(
        "", description="Data directory of the embedded PostgreSQL (pgserver), used when no DSN is set."
    )
    gateway_database_migrate_on_start: bool = Field(
        True,
        description="Apply the database migrations at start; false (the chart's setting, where a Job runs "
        "`python -m gateway_service.migrate` with a DDL-capable role first) only checks the schema is "
        "current and refuses to start if not.",
    )
    gateway_database_pool_size: int = Field(
        4,
        gt=0,
        description="Connections in the gateway's PostgreSQL pool; a request that waits longer than "
        "GATEWAY_DATABASE_TIMEOUT_SECONDS for one gets 503 with Retry-After.",
    )
    gateway_database_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for a database connection or query."
    )
    gateway_database_statement_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="The server cancels a gateway statement running longer (one stuck behind a lock); "
        "a request then gets 503 with Retry-After and the request-log writer retries.",
    )
    gateway_key_cache_ttl_seconds: float = Field(
        5.0,
        gt=0,
        description="How long a key lookup is cached; a revoked key stops working within this time.",
    )
    gateway_unknown_key_cache_ttl_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a key id found unknown or revoked is refused without asking the database; "
        "a key created on another replica works here within this time (on its own replica at once).",
    )
    gateway_ip_auth_failures: int = Field(
        20,
        ge=0,
        description="Failed authentications per client IP per rate-limit window before that address gets "
        "429 (Retry-After); 0 = unlimited.",
    )

    gateway_admin_api_enabled: bool = Field(
        True, description="Serve /v1/admin/* (key and organization management) on this listener."
    )
    gateway_console_enabled: bool = Field(
        True, description="Serve the web console at /console (it signs in with an API key)."
    )
    gateway_console_trace_url: str = Field(
        "",
        max_length=2048,
        description="Trace UI address for the console's trace links, with {trace_id} where the id goes "
        "(e.g. http://jaeger:16686/trace/{trace_id}); empty shows no link.",
    )
    gateway_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='JSON: model -> {"prompt_per_1m": USD, "completion_per_1m": USD}; unpriced models cost 0.',
    )
    gateway_usage_flush_seconds: float = Field(
        1.0, gt=0, description="Interval of the batched usage writes to the database."
    )
    gateway_usage_queue_max: int = Field(
        10_000,
        gt=0,
        description="Request-log rows waiting to be written beyond which new chat requests get "
        "503 `overloaded` (rows are not dropped to make room).",
    )
    gateway_request_log_retention_days: int = Field(
        90,
        ge=0,
        description="Request-log (usage) rows older than this many days are deleted; 0 keeps them forever.",
    )
    gateway_response_retention_days: int = Field(
        30,
        ge=0,
        description="Responses API answers kept for GET /v1/responses/{id} and previous_response_id "
        "(store: true) are deleted after this many days; 0 keeps them until deleted.",
    )
    gateway_response_memory_max: int = Field(
        10_000,
        ge=1,
        description="Without a database, stored Responses API answers are kept in process (one replica "
        "only), at most this many; the oldest go first.",
    )
    gateway_summary_model: str = Field(
        "",
        description="Model (served by the generation service) that writes request-log summaries; "
        "empty uses the extractive summary.",
    )
    gateway_summary_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of the summary model per batch of request-log rows."
    )

    @field_validator("gateway_api_key")
    @classmethod
    def _key_is_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("GATEWAY_API_KEY is empty; set it to the bearer key clients must send")
        return value
