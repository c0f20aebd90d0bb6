"""`make run`: the whole suite on embedded defaults, until Ctrl-C."""

import os
import secrets
import signal
import sys
import time
from pathlib import Path

from llmsuite_common.local_auth import LocalAuthority
from llmsuite_common.service_keys import SIGNING_KEY_FILE
from llmsuite_common.service_tokens import SigningKey
from llmsuite_testkit.processes import ProcessGroup, busy_ports, python_service

from .corpus import SAMPLE_COLLECTION, ingest_dir
from .model_server import model_server
from .suite import LOCAL_MODEL, Ports, SuiteConfig, service_envs, service_keys

# The checkout: `make run` keeps its data and logs under it.
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "When is the support desk open?"
BACKEND_METRICS_PORTS = {"guardrails": 9461, "retrieval": 9462, "generation": 9463}


def examples(port: int, api_key: str, retrieval_port: int) -> str:
    base = f"http://127.0.0.1:{port}/v1"
    body = (
        f'{{"model": "{LOCAL_MODEL}", "stream": true, "max_tokens": 48, '
        f'"messages": [{{"role": "user", "content": "{QUESTION}"}}], '
        f'"retrieval": {{"collection": "{SAMPLE_COLLECTION}", "k": 2}}}}'
    )
    return f"""
llmsuite is up. Gateway: {base}   API key: {api_key}

Open the console in a browser and sign in with the API key:

  http://127.0.0.1:{port}/console

Stream an answer grounded on the sample handbook:

  curl -N {base}/chat/completions \\
    -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\
    -d '{body}'

Or with the openai client (.venv/bin/python):

  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{api_key}")
  stream = client.chat.completions.create(
      model="{LOCAL_MODEL}", stream=True,
      messages=[{{"role": "user", "content": "{QUESTION}"}}],
      max_tokens=48,
      extra_body={{"retrieval": {{"collection": "{SAMPLE_COLLECTION}", "k": 2}}}},
  )
  for chunk in stream:
      print(chunk.choices[0].delta.content or "", end="", flush=True)

Call retrieval over gRPC as an internal team: exchange the key for a short-lived token.

  TOKEN=$(curl -s -X POST {base}/auth/token -H "Authorization: Bearer {api_key}" \\
    -H "Content-Type: application/json" -d '{{"audience": "retrieval"}}' | jq -r .access_token)
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"collection": "{SAMPLE_COLLECTION}", "query": "support hours", "k": 2}}' \\
    127.0.0.1:{retrieval_port} llmsuite.retrieval.v1.RetrievalService/Search

Metrics: {base.removesuffix("/v1")}/metrics and http://127.0.0.1:9461-9463/metrics (backends).
Logs: {ROOT / ".run" / "logs"}. Ctrl-C stops everything.
"""


def main() -> int:
    data_dir = Path(os.environ.get("LLMSUITE_DATA_DIR", ROOT / ".data"))
    log_dir = ROOT / ".run" / "logs"
    api_key = os.environ.get("GATEWAY_API_KEY") or "sk-local-" + secrets.token_urlsafe(18)
    cfg = SuiteConfig(
        api_key=api_key,
        data_dir=data_dir,
        ports=Ports(gateway=int(os.environ.get("GATEWAY_PORT", "8080"))),
        database_url=os.environ.get("RETRIEVAL_DATABASE_URL", ""),
        otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        upstream_base_url=os.environ.get("GENERATION_UPSTREAM_BASE_URL", ""),
        extra_env={name: {"METRICS_PORT": str(port)} for name, port in BACKEND_METRICS_PORTS.items()},
    )
    envs = service_envs(cfg)
    group = ProcessGroup()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    wanted = {name: getattr(cfg.ports, name) for name in ("gateway", "guardrails", "retrieval", "generation")}
    if not cfg.upstream_base_url:
        wanted["model server"] = cfg.ports.model
    wanted.update({f"{name} metrics": port for name, port in BACKEND_METRICS_PORTS.items()})
    taken = busy_ports(wanted)
    if taken:
        # Said up front: otherwise the first service to lose the race only says so in its own log.
        print(
            f"ports in use on 127.0.0.1: {', '.join(taken)}; stop what holds them and run again "
            "(GATEWAY_PORT moves the gateway)",
            file=sys.stderr,
        )
        return 1
    started = time.monotonic()
    try:
        print("starting the model server, guardrails, retrieval and generation ...", flush=True)
        backends = [
            python_service(name, getattr(cfg.ports, name), envs[name], log_dir)
            for name in ("guardrails", "retrieval", "generation")
        ]
        if not cfg.upstream_base_url:
            backends.insert(0, model_server(cfg.ports.model, data_dir, log_dir))
        group.start_many(backends, timeout=300)
        # Signed with the suite's own key, as the gateway signs its calls.
        authority = LocalAuthority(SigningKey.from_file(service_keys(cfg.data_dir) / SIGNING_KEY_FILE))
        chunks = ingest_dir(cfg.ports.retrieval, "default", authority.metadata("retrieval", "default"))
        print(f"ingested the sample handbook: {chunks} chunks", flush=True)
        group.start(python_service("gateway", cfg.ports.gateway, envs["gateway"], log_dir), timeout=60)
        print(f"ready in {time.monotonic() - started:.0f}s", flush=True)
        print(examples(cfg.ports.gateway, api_key, cfg.ports.retrieval), flush=True)
        while all(p.popen is not None and p.popen.poll() is None for p in group.processes):
            time.sleep(0.5)
        dead = [p.name for p in group.processes if p.popen is not None and p.popen.poll() is not None]
        print(f"stopped unexpectedly: {', '.join(dead)}; see {log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        group.stop()


if __name__ == "__main__":
    sys.exit(main())
