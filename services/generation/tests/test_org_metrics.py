"""Tokens and cost are counted per organization, from the request context the gateway sends, with
the call's trace id as the exemplar."""

from generation_service.accounting import Accounting
from generation_service.metrics import GenerationMetrics
from llmsuite.common.v1 import common_pb2
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from .test_resilience import routing_file
from .test_servicer import collect, request


def samples(registry: CollectorRegistry, name: str) -> dict[frozenset, float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == name
    }


async def test_tokens_and_cost_carry_the_org_of_the_credential(fake, start_generation, tmp_path):
    """The org comes from the call's token; a request naming none is its token's org ("default")."""
    deployment = {"name": "priced", "base_url": fake.base_url, "upstream_model": "priced",
                  "price": {"prompt": 1000.0, "completion": 2000.0}}  # fmt: skip
    path = routing_file(tmp_path, fake, {"m": {"deployments": [deployment]}})
    registry = CollectorRegistry()
    stub = await start_generation(GenerationMetrics(registry), generation_routing_file=path)
    finals = []
    for org in ("acme", "globex", ""):
        fake.script({"chunks": 3})
        _, [final] = await collect(
            stub.Generate(request(model="m", context=common_pb2.RequestContext(org_id=org, request_id="r")))
        )
        finals.append(final)

    tokens = samples(registry, "llmsuite_generation_tokens_total")
    cost = samples(registry, "llmsuite_generation_cost_usd_total")
    for org, final in zip(("acme", "globex", "default"), finals, strict=True):
        series = {("org", org), ("model", "m"), ("deployment", "priced")}
        assert tokens[frozenset({*series, ("kind", "prompt")})] == final.usage.prompt_tokens
        assert tokens[frozenset({*series, ("kind", "completion")})] == final.usage.completion_tokens
        assert cost[frozenset(series)] == final.cost_usd > 0


def test_token_counter_exemplar_is_the_calls_trace_id():
    registry = CollectorRegistry()
    metrics = GenerationMetrics(registry)
    span = TracerProvider().get_tracer("test").start_span("Generate")
    account = Accounting("m", ["hello"], span, metrics, org="acme")

    class Deployment:
        name = "d"
        price = type("Price", (), {"cost": staticmethod(lambda *a: 0.0)})()

    class Committed:
        deployment = Deployment()
        route = type("Route", (), {"model": "m"})()
        attempts = 1

    account.committed = Committed()  # type: ignore[assignment]
    account.finish("stop", {"prompt_tokens": 3, "completion_tokens": 2}, "id")
    account.close()
    span.end()

    trace_id = format(span.get_span_context().trace_id, "032x")
    text = generate_latest(registry).decode()
    exemplars = [
        s.exemplar
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llmsuite_generation_tokens_total" and s.labels["org"] == "acme"
    ]
    assert [e.labels["trace_id"] for e in exemplars] == [trace_id, trace_id]
