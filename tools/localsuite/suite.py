"""The suite's local configuration: the same env var names the Helm chart sets."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from llmsuite_common.service_keys import JWKS_FILE, SIGNING_KEY_FILE, write_keys
from llmsuite_testkit.processes import free_port

LOCAL_MODEL = "gemma-3-270m"
# The local model is a base model: llama.cpp's alpaca chat format plus this stop
# sequence keep it to one answer instead of inventing further turns.
LOCAL_MODEL_STOP = ["\n###"]


@dataclass
class Ports:
    gateway: int = 8080
    guardrails: int = 50061
    retrieval: int = 50062
    generation: int = 50063
    model: int = 8081

    @classmethod
    def free(cls) -> "Ports":
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


@dataclass
class SuiteConfig:
    api_key: str
    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    upstream_base_url: str = ""
    models: dict[str, dict[str, object]] = field(
        default_factory=lambda: {LOCAL_MODEL: {"upstream_model": LOCAL_MODEL, "stop": LOCAL_MODEL_STOP}}
    )
    database_url: str = ""
    otlp_endpoint: str = ""
    log_level: str = "INFO"
    drain_seconds: float = 0.5
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def upstream(self) -> str:
        return self.upstream_base_url or f"http://127.0.0.1:{self.ports.model}/v1"


def service_keys(data_dir: Path) -> Path:
    """The key pair behind service tokens, made once per data directory."""
    keys = data_dir / "service-keys"
    if not (keys / SIGNING_KEY_FILE).exists() or not (keys / JWKS_FILE).exists():
        write_keys(keys)
    return keys


def service_envs(cfg: SuiteConfig) -> dict[str, dict[str, str]]:
    keys = service_keys(cfg.data_dir)
    common = {
        "LOG_LEVEL": cfg.log_level,
        "DRAIN_SECONDS": str(cfg.drain_seconds),
        "HOST": "127.0.0.1",
        # Every gRPC service verifies the gateway's tokens with the public key alone.
        "GRPC_AUTH_PUBLIC_KEYS_FILE": str(keys / JWKS_FILE),
    }
    if cfg.otlp_endpoint:
        common |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": cfg.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            # Export promptly so a short-lived local run or test sees its spans.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
    p = cfg.ports
    envs = {
        "guardrails": {},
        "retrieval": {
            "RETRIEVAL_DATABASE_URL": cfg.database_url,
            "RETRIEVAL_PGSERVER_DATA_DIR": str(cfg.data_dir / "pgserver"),
            "RETRIEVAL_EMBEDDING_MODEL_DIR": "",
        },
        "generation": {
            "GENERATION_UPSTREAM_BASE_URL": cfg.upstream(),
            "GENERATION_MODELS": json.dumps(cfg.models),
        },
        "gateway": {
            "GATEWAY_API_KEY": cfg.api_key,
            "GATEWAY_TOKEN_SIGNING_KEY_FILE": str(keys / SIGNING_KEY_FILE),
            # Joins retrieval's embedded PostgreSQL: organizations, keys and usage live there locally.
            "GATEWAY_PGSERVER_DATA_DIR": str(cfg.data_dir / "pgserver"),
            "GATEWAY_GUARDRAILS_TARGET": f"dns:///127.0.0.1:{p.guardrails}",
            "GATEWAY_RETRIEVAL_TARGET": f"dns:///127.0.0.1:{p.retrieval}",
            "GATEWAY_GENERATION_TARGET": f"dns:///127.0.0.1:{p.generation}",
        },
    }
    return {name: {**common, **env, **cfg.extra_env.get(name, {})} for name, env in envs.items()}
