"""Measures x-gateway-overhead-ms at concurrency 1 and 64 against the scripted fake upstream.

    .venv/bin/python -m bench.gateway_overhead [memory|redis]

Starts the fake upstream, guardrails, generation and one gateway (limits on; `redis` uses
redis://127.0.0.1:6379/0), sends non-streaming and streaming chat requests, and prints the header's
p50/p90/p99 and the mean of the llmsuite_gateway_overhead_seconds histogram.
"""

import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from llmsuite_testkit.processes import Process, ProcessGroup, fake_upstream, http_ok, python_service

from tools.localsuite.suite import Ports, SuiteConfig, service_envs

log = Path(tempfile.mkdtemp(prefix="overhead-"))
ports = Ports.free()
cfg = SuiteConfig(
    api_key="sk-ovh",
    data_dir=log,
    ports=ports,
    upstream_base_url=f"http://127.0.0.1:{ports.model}/v1",
    models={"fake-model": {"upstream_model": "fake-model", "stop": []}},
    log_level="WARNING",
)
envs = service_envs(cfg)
g = ProcessGroup()
fake = fake_upstream(ports.model, log, name="fake")
mode = sys.argv[1] if len(sys.argv) > 1 else "memory"
CASES = ((64, 2000),) if "quick" in sys.argv else ((1, 400), (64, 2000))
genv = {
    **envs["gateway"],
    "GATEWAY_DEFAULT_MODEL": "fake-model",
    "GATEWAY_KEY_RPM": "1000000",
    "GATEWAY_KEY_TPM": "1000000000",
}
if mode == "redis":
    genv["GATEWAY_REDIS_URL"] = "redis://127.0.0.1:6379/0"
gw = Process(
    "gateway",
    [sys.executable, "-m", "gateway_service"],
    {"OTEL_SERVICE_NAME": "gateway", "PORT": str(ports.gateway), **genv},
    lambda: http_ok(f"http://127.0.0.1:{ports.gateway}/healthz"),
    log / "gateway.log",
)
try:
    g.start(fake, 30)
    g.start_many(
        [python_service(n, getattr(ports, n), envs[n], log) for n in ("guardrails", "generation")], 60
    )
    g.start(gw, 60)
    url = f"http://127.0.0.1:{ports.gateway}/v1/chat/completions"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}

    errors = []

    async def run(conc, total, stream):
        vals = []
        lim = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(
            headers={"authorization": "Bearer sk-ovh"}, limits=lim, timeout=60, trust_env=False
        ) as c:
            sem = asyncio.Semaphore(conc)

            async def one():
                async with sem:
                    try:
                        r = await c.post(url, json={**body, "stream": stream})
                    except httpx.TransportError as e:
                        errors.append(repr(e))
                        return
                    assert r.status_code == 200, r.text
                    vals.append(float(r.headers["x-gateway-overhead-ms"]))

            await asyncio.gather(*(one() for _ in range(50)))  # warm-up
            vals.clear()
            await asyncio.gather(*(one() for _ in range(total)))
        vals.sort()
        print(conc, stream, "errors", len(errors), errors[:2], flush=True)
        return {
            "n": len(vals),
            "p50": round(statistics.median(vals), 3),
            "p90": round(vals[int(len(vals) * 0.9)], 3),
            "p99": round(vals[int(len(vals) * 0.99)], 3),
        }

    async def main():
        out = {}
        for conc, total in CASES:
            for stream in (False, True):
                out[f"c{conc}-{'stream' if stream else 'json'}"] = await run(conc, total, stream)
        m = httpx.get(f"http://127.0.0.1:{ports.gateway}/metrics").text
        s = float(m.split("llmsuite_gateway_overhead_seconds_sum ")[1].split()[0])
        n = float(m.split("llmsuite_gateway_overhead_seconds_count ")[1].split()[0])
        out["metric_mean_ms_all"] = round(s / n * 1000, 3)
        print(mode, json.dumps(out, indent=1))

    asyncio.run(main())
finally:
    g.stop()
