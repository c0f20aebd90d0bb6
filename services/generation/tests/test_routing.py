import os

import pytest
from generation_service.routing import RouteRequest, RoutingTable
from generation_service.routing_config import RoutingConfig
from generation_service.routing_source import RoutingError, RoutingSource, parse_routing
from generation_service.settings import GenerationSettings
from llmsuite_common.errors import NotFound

ROUTING = """
models:
  small-model:
    aliases: [small, classifier]
    deployments:
      - {name: ollama, base_url: "http://127.0.0.1:11434/v1", upstream_model: "qwen2.5:0.5b"}
    stop: ["\\n###"]
    max_tokens: 256
  big-model:
    policy: least_busy
    fallback: [small-model]
    deployments:
      - name: vllm-a
        base_url: http://10.0.0.1:8000/v1
        upstream_model: meta-llama/Llama-3.1-8B-Instruct
        weight: 3
        max_concurrency: 32
        timeouts: {connect: 1, read: 30, total: 120}
        price: {prompt: 0.2, completion: 0.6}
      - name: hosted
        base_url: https://api.example.test/v1
        upstream_model: gpt-4o-mini
        api_key_env: HOSTED_API_KEY
auto:
  small: small
  large: big-model
  max_prompt_tokens: 100
  max_completion_tokens: 16
orgs:
  acme:
    max_tokens: 50
    auto: {small: small-model, large: small-model}
"""

ENV = {"HOSTED_API_KEY": "sk-canary-hosted"}


def table(text: str = ROUTING, env: dict[str, str] | None = None) -> RoutingTable:
    return parse_routing(text, ENV if env is None else env)


def test_names_aliases_and_auto_are_listed():
    assert table().public_names() == ["small-model", "small", "classifier", "big-model", "auto"]


def test_aliases_resolve_to_their_model():
    t = table()
    assert t.resolve(RouteRequest("classifier")).model == "small-model"
    route = t.resolve(RouteRequest("big-model"))
    assert [d.name for d in route.deployments] == ["vllm-a", "hosted"]
    assert route.deployments[1].api_key.get_secret_value() == "sk-canary-hosted"
    assert "sk-canary" not in repr(route)
    assert [r.model for r in t.chain(route)] == ["big-model", "small-model"]


def test_unknown_model_is_not_found():
    with pytest.raises(NotFound):
        table().resolve(RouteRequest("gpt-nope"))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (RouteRequest("auto", prompt_tokens=20, max_tokens=5), "small-model"),
        (RouteRequest("auto", prompt_tokens=20, max_tokens=None), "big-model"),
        (RouteRequest("auto", prompt_tokens=20, max_tokens=200), "big-model"),
        (RouteRequest("auto", prompt_tokens=500, max_tokens=5), "big-model"),
        (RouteRequest("auto", prompt_tokens=20, max_tokens=5, has_tools=True), "big-model"),
        # The org's own rule wins over the global one.
        (RouteRequest("auto", org_id="acme", prompt_tokens=500), "small-model"),
    ],
)
def test_auto_rule(request_, expected):
    assert table().resolve(request_).model == expected


def test_auto_without_a_rule_is_not_found():
    text = "models: {m: {deployments: [{base_url: 'http://127.0.0.1:1/v1', upstream_model: m}]}}"
    t = table(text)
    assert t.public_names() == ["m"]
    with pytest.raises(NotFound):
        t.resolve(RouteRequest("auto"))


def test_org_token_cap():
    assert table().org_max_tokens("acme") == 50
    assert table().org_max_tokens("other") is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.replace("fallback: [small-model]", "fallback: [nope]"), "fallback"),
        (lambda t: t.replace("aliases: [small, classifier]", "aliases: [big-model]"), "used twice"),
        (lambda t: t.replace("name: hosted", "name: vllm-a"), "used twice"),
        (lambda t: t.replace("large: big-model", "large: nope"), "unknown model"),
        (lambda t: t.replace("http://10.0.0.1:8000/v1", "http://user:sk-canary@10.0.0.1/v1"), "credentials"),
        (lambda t: t.replace("weight: 3", "weight: 0"), "weight"),
        (lambda t: t.replace("aliases: [small, classifier]", "aliases: [auto]"), "reserved"),
        (lambda t: t + "\nextra_key: 1\n", "extra_key"),
        (lambda t: t.replace("models:", "models: ["), "YAML"),
    ],
)
def test_invalid_files_are_refused_with_a_reason(change, words):
    with pytest.raises(RoutingError) as info:
        table(change(ROUTING))
    assert words in str(info.value)
    assert "sk-canary" not in str(info.value)


def test_missing_api_key_variable_is_an_error():
    with pytest.raises(RoutingError, match="HOSTED_API_KEY"):
        table(env={})


def test_legacy_settings_become_one_deployment_per_model():
    settings = GenerationSettings(
        generation_upstream_base_url="http://127.0.0.1:9/v1",
        generation_upstream_api_key="sk-canary-legacy",
        generation_models={"a": {"upstream_model": "up-a", "stop": ["###"], "max_tokens": 9}},
        generation_read_timeout_seconds=7,
    )
    t = RoutingSource(settings).table
    route = t.resolve(RouteRequest("a"))
    [d] = route.deployments
    assert (d.base_url, d.upstream_model, d.timeouts.read) == ("http://127.0.0.1:9/v1", "up-a", 7)
    assert d.api_key.get_secret_value() == "sk-canary-legacy"
    assert (route.stop, route.max_tokens) == (("###",), 9)
    assert t.public_names() == ["a"]


def test_the_file_is_reloaded_when_it_changes_and_a_bad_edit_is_ignored(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    source = RoutingSource(GenerationSettings(generation_routing_file=str(path)), environ=ENV)
    assert not source.reload_if_changed()
    path.write_text(ROUTING.replace("classifier", "sorter"))
    os.utime(path, ns=(1, 1))
    assert source.reload_if_changed()
    assert "sorter" in source.table.public_names()
    path.write_text("models: {}")
    os.utime(path, ns=(2, 2))
    assert not source.reload_if_changed()
    assert "sorter" in source.table.public_names()


def test_a_bad_file_at_start_up_is_fatal(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("models: {}")
    with pytest.raises(RoutingError):
        RoutingSource(GenerationSettings(generation_routing_file=str(path)), environ={})
    with pytest.raises(RoutingError, match="cannot read"):
        RoutingSource(GenerationSettings(generation_routing_file=str(tmp_path / "missing.yaml")), environ={})


def test_price_of_a_request():
    config = RoutingConfig.model_validate(
        {
            "models": {
                "m": {
                    "deployments": [
                        {
                            "base_url": "http://h/v1",
                            "upstream_model": "m",
                            "price": {"prompt": 1.0, "completion": 2.0, "cached_prompt": 0.5},
                        }
                    ]
                }
            }
        }
    )
    price = config.models["m"].deployments[0].price
    assert price.cost(1000, 500, cached_tokens=200) == pytest.approx((800 * 1 + 200 * 0.5 + 500 * 2) / 1e6)


def test_api_keys_by_reference_from_one_secret_variable(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.replace("api_key_env: HOSTED_API_KEY", "api_key_ref: hosted"))
    settings = GenerationSettings(
        generation_routing_file=str(path), generation_upstream_api_keys={"hosted": "sk-canary-ref"}
    )
    route = RoutingSource(settings, environ={}).table.resolve(RouteRequest("big-model"))
    assert route.deployments[1].api_key.get_secret_value() == "sk-canary-ref"
    assert "sk-canary" not in repr(settings)
    with pytest.raises(RoutingError, match="no key named 'hosted'"):
        RoutingSource(GenerationSettings(generation_routing_file=str(path)), environ={})
