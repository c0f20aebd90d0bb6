"""A dedicated generation + gateway pair on top of the suite, for the observability tests.

Generation carries an upstream key and serves models of its own (so the fake upstream's per-model
scripts reach only these tests), makes one attempt per request and never opens its breaker, so
every scripted fault is counted once. The gateway allows one stream per key at a time and gives
each request a short deadline, so a 429 and a timeout are cheap to provoke. Guardrails, retrieval
and the fake upstream are the suite's.
"""

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from llmsuite_testkit.processes import ProcessGroup, free_port, python_service
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Suite
from tools.localsuite.suite import service_envs

REQUEST_TIMEOUT_SECONDS = 3.0
UPSTREAM_KEY = "sk-upstream-canary-" + secrets.token_hex(12)
MODELS = ("obs-metrics", "obs-canary")


@dataclass
class Stack:
    suite: Suite
    gateway_url: str
    generation_metrics_url: str
    log_dir_name: str

    def script(self, model: str, scenario: dict | None) -> None:
        httpx.put(
            f"{self.suite.upstream_url}/_script/model/{model}", content=json.dumps(scenario), timeout=5
        ).raise_for_status()

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url,
            headers={"authorization": f"Bearer {key or self.suite.api_key}"},
            timeout=REQUEST_TIMEOUT_SECONDS + 30,
        )


def start_stack(suite: Suite, log_dir_name: str) -> tuple[ProcessGroup, Stack]:
    envs = service_envs(suite.cfg)
    generation_port, gateway_port, metrics_port = free_port(), free_port(), free_port()
    log_dir = suite.log_dir / log_dir_name
    group = ProcessGroup()
    try:
        group.start(
            python_service(
                "generation",
                generation_port,
                {
                    **envs["generation"],
                    "GENERATION_MODELS": json.dumps({m: {"upstream_model": m, "stop": []} for m in MODELS}),
                    "GENERATION_UPSTREAM_API_KEY": UPSTREAM_KEY,
                    "GENERATION_MAX_ATTEMPTS": "1",
                    "GENERATION_BREAKER_FAILURES": "1000",
                    "METRICS_PORT": str(metrics_port),
                },
                log_dir,
            ),
            timeout=60,
        )
        group.start(
            python_service(
                "gateway",
                gateway_port,
                {
                    **envs["gateway"],
                    "GATEWAY_GENERATION_TARGET": f"dns:///127.0.0.1:{generation_port}",
                    "GATEWAY_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
                    "GATEWAY_KEY_MAX_STREAMS": "1",
                },
                log_dir,
            ),
            timeout=60,
        )
    except BaseException:
        group.stop()
        raise
    stack = Stack(
        suite, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{metrics_port}/metrics", log_dir_name
    )
    return group, stack


def stack_fixture(suite: Suite, log_dir_name: str) -> Iterator[Stack]:
    group, stack = start_stack(suite, log_dir_name)
    try:
        yield stack
    finally:
        for model in MODELS:
            stack.script(model, None)
        group.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def deltas(before: Samples, after: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every labelled series of `name` that moved, with how much."""
    moved = {}
    for key in set(before) | set(after):
        if key[0] == name and after.get(key, 0.0) != before.get(key, 0.0):
            moved[key[1]] = after.get(key, 0.0) - before.get(key, 0.0)
    return moved
