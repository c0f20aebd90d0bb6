"""The fake upstream and the targets in front of it, started as real processes."""

import functools
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from llmsuite_common.local_auth import LocalAuthority

from .config import BenchSettings
from .processes import PYTHON, Proc, free_port, grpc_ready, http_ready, spawn, wait_until

MODEL = "bench-model"
# The model name picks the fake upstream's answer shape; every target serves both names.
MODELS = {"short": MODEL, "long": f"{MODEL}-long"}

LABELS = {
    "direct": "direct (the limit)",
    "direct-again": "direct, second client (noise floor)",
    "passthrough": "FastAPI pass-through",
    "passthrough-fast": "aiohttp pass-through (fast)",
    "litellm": "LiteLLM proxy",
    "llmsuite": "llmsuite full chain",
}


@dataclass
class Target:
    name: str
    url: str
    procs: list[Proc] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def start_fake_upstream(cfg: BenchSettings) -> tuple[Proc, str]:
    shape = cfg.shape()
    port = free_port()
    argv = [str(PYTHON), "-m", "bench.fake_upstream", "--port", str(port)]
    argv += ["--delay-ms", str(shape.delay_ms), "--chunks", str(shape.chunks), "--gap-ms", str(shape.gap_ms)]
    argv += ["--shape", f"{MODELS['long']}={cfg.shape('long').spec()}"]
    proc = spawn("fake-upstream", argv, {}, cfg.work_dir / "logs")
    wait_until(proc, http_ready(f"http://127.0.0.1:{port}/health"), cfg.startup_timeout_seconds)
    return proc, f"http://127.0.0.1:{port}/v1"


def direct(upstream: str, name: str = "direct") -> Target:
    return Target(name, f"{upstream}/chat/completions")


def start_passthrough(cfg: BenchSettings, upstream: str) -> Target:
    port = free_port()
    argv = [str(PYTHON), "-m", "bench.passthrough", "--upstream", upstream, "--port", str(port)]
    proc = spawn("passthrough", argv, {}, cfg.work_dir / "logs")
    target = Target("passthrough", f"http://127.0.0.1:{port}/v1/chat/completions", [proc])
    wait_until(proc, http_ready(f"http://127.0.0.1:{port}/docs"), cfg.startup_timeout_seconds)
    return target


def start_passthrough_fast(cfg: BenchSettings, upstream: str) -> Target:
    port = free_port()
    argv = [str(PYTHON), "-m", "bench.passthrough_fast", "--upstream", upstream, "--port", str(port)]
    proc = spawn("passthrough-fast", argv, {}, cfg.work_dir / "logs")
    target = Target("passthrough-fast", f"http://127.0.0.1:{port}/v1/chat/completions", [proc])
    wait_until(proc, http_ready(f"http://127.0.0.1:{port}/health"), cfg.startup_timeout_seconds)
    return target


def litellm_config(upstream: str) -> dict:
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream,
                    "api_key": "bench-upstream",
                },
            }
            for model in MODELS.values()
        ],
        "litellm_settings": {"telemetry": False},
    }


def start_litellm(cfg: BenchSettings, upstream: str) -> Target:
    exe = cfg.litellm_bin / "litellm"
    if not exe.exists():
        raise FileNotFoundError(
            f"{exe} is missing; `make bench` creates it from bench/requirements-litellm.txt"
        )
    config_path = cfg.work_dir / "litellm.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    # YAML is a superset of JSON, so LiteLLM reads this file as its config.
    config_path.write_bytes(orjson.dumps(litellm_config(upstream), option=orjson.OPT_INDENT_2))
    port = free_port()
    argv = [
        str(exe),
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env: dict[str, str | None] = {
        # Otherwise it downloads a price list at start; the bench never leaves 127.0.0.1.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
        # No database: LiteLLM then runs without virtual keys or spend logs.
        "DATABASE_URL": None,
    }
    proc = spawn("litellm", argv, env, cfg.work_dir / "logs")
    wait_until(proc, http_ready(f"http://127.0.0.1:{port}/health/liveliness"), cfg.startup_timeout_seconds)
    return Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", [proc])


def service_argv(name: str) -> list[str]:
    return [str(PYTHON), "-m", f"{name}_service"]


# The token authority of the benched services: the gateway signs with its key, the gRPC
# services verify with its public key (the same path as deployed); direct gRPC drivers sign too.
AUTHORITY = LocalAuthority()


@functools.cache
def _key_files() -> tuple[str, str]:
    signing, jwks = AUTHORITY.write(Path(tempfile.mkdtemp(prefix="bench-keys-")))
    return str(signing), str(jwks)


def service_env(name: str, port: int, extra: dict[str, str]) -> dict[str, str]:
    signing, jwks = _key_files()
    keys = (
        {"GATEWAY_TOKEN_SIGNING_KEY_FILE": signing}
        if name == "gateway"
        else {"GRPC_AUTH_PUBLIC_KEYS_FILE": jwks}
    )
    return {
        **keys,
        "OTEL_SERVICE_NAME": name,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DRAIN_SECONDS": "0",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def start_llmsuite(cfg: BenchSettings, upstream: str) -> Target:
    """guardrails and generation over gRPC behind the gateway, each with its production defaults."""
    logs = cfg.work_dir / "logs"
    procs: list[Proc] = []
    try:
        guard_port = free_port()
        guard = spawn(
            "guardrails", service_argv("guardrails"), service_env("guardrails", guard_port, {}), logs
        )
        procs.append(guard)
        gen_port = free_port()
        routes = {model: {"upstream_model": model, "stop": []} for model in MODELS.values()}
        gen_env = {
            "GENERATION_UPSTREAM_BASE_URL": upstream,
            "GENERATION_MODELS": orjson.dumps(routes).decode(),
        }
        gen = spawn(
            "generation", service_argv("generation"), service_env("generation", gen_port, gen_env), logs
        )
        procs.append(gen)
        wait_until(guard, grpc_ready(f"127.0.0.1:{guard_port}"), cfg.startup_timeout_seconds)
        wait_until(gen, grpc_ready(f"127.0.0.1:{gen_port}"), cfg.startup_timeout_seconds)

        key = "bench-" + secrets.token_hex(16)
        http_port = free_port()
        gw_env = {
            "GATEWAY_API_KEY": key,
            "GATEWAY_GUARDRAILS_TARGET": f"dns:///127.0.0.1:{guard_port}",
            "GATEWAY_GENERATION_TARGET": f"dns:///127.0.0.1:{gen_port}",
            # No retrieval process: bench requests name no collection, so the gateway never calls it.
            "GATEWAY_RETRIEVAL_TARGET": f"dns:///127.0.0.1:{free_port()}",
            **cfg.llmsuite_env,
        }
        gateway = spawn("gateway", service_argv("gateway"), service_env("gateway", http_port, gw_env), logs)
        procs.append(gateway)
        base = f"http://127.0.0.1:{http_port}"
        wait_until(gateway, http_ready(f"{base}/healthz"), cfg.startup_timeout_seconds)
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        raise
    return Target("llmsuite", f"{base}/v1/chat/completions", procs, {"authorization": f"Bearer {key}"})


def payload(cfg: BenchSettings, stream: bool, shape: str = "short") -> dict:
    return {
        "model": MODELS[shape],
        "messages": [{"role": "user", "content": cfg.prompt}],
        # Room for every chunk: the chain stops a stream that runs past max_tokens.
        "max_tokens": max(64, 2 * cfg.shape(shape).chunks),
        "stream": stream,
    }


def check(cfg: BenchSettings, target: Target) -> None:
    """One request of each kind must come back right before any load is sent."""
    expected = cfg.shape().text()
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        reply = client.post(target.url, json=payload(cfg, False), headers=target.headers)
        if reply.status_code != 200:
            raise RuntimeError(f"{target.name}: HTTP {reply.status_code}: {reply.text[:300]}")
        text = reply.json()["choices"][0]["message"]["content"]
        if text != expected:
            raise RuntimeError(f"{target.name}: unexpected text {text[:100]!r}")
        with client.stream("POST", target.url, json=payload(cfg, True), headers=target.headers) as reply:
            if reply.status_code != 200:
                reply.read()
                raise RuntimeError(f"{target.name}: HTTP {reply.status_code} on a stream: {reply.text[:300]}")
            lines = [line for line in reply.iter_lines() if line.startswith("data:")]
        if not lines or lines[-1].strip() != "data: [DONE]":
            raise RuntimeError(f"{target.name}: stream did not end with [DONE]: {lines[-2:]}")
