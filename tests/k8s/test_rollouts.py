"""Rollouts, drains and promises the chart keeps, and values it refuses before an API server would.

The rendered cases (defaults and ci/) must derive every grace on a stream's path from
global.maxGenerationSeconds, run the gateway's shared state in Redis, and give the inference tier
a disruption budget, a preStop hook, a spread and a rollout that fits a GPU. Values that break one
of these promises, or that the API server or a node drain would reject later, fail to render with
a message saying which value and why (templates/_checks.tpl); each is rendered here with Helm's
engine (`python -m k8stools try`).
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from k8s_objects import component, container_env, named, of_kind, pod_spec

ROOT = Path(__file__).resolve().parents[2]
K8S_PYTHON = ROOT / "k8s" / ".venv" / "bin" / "python"
STREAMING = ("gateway", "guardrails", "generation")
GRPC = ("guardrails", "retrieval", "generation")


def _set(path: str, value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} from "a.b"."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return dict(out)


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = value
    return merged


NO_REDIS = _set("redis.enabled", False)
VLLM_CACHE_CLAIM = _merge(
    _set("inference.engine", "vllm"),
    _set(
        "inference.vllm.cachePersistence",
        {
            "enabled": True,
            "existingClaim": "",
            "size": "40Gi",
            "storageClass": "fast",
            "accessModes": ["ReadWriteOnce"],
        },
    ),
)
ROUTE = {"name": "vllm", "base_url": "http://vllm.example.test/v1", "upstream_model": "m"}

# Case name -> values on top of the defaults, and the message rendering must fail with (None: renders).
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # Gateway replicas and Redis.
    "gateway_hpa_without_redis": (NO_REDIS, "components.gateway runs up to 10 replicas without Redis"),
    "gateway_fixed_replicas_without_redis": (
        _merge(NO_REDIS, _set("components.gateway", {"replicas": 3, "autoscaling": {"enabled": False}})),
        "components.gateway runs up to 3 replicas without Redis",
    ),
    "gateway_per_pod_limits_chosen": (_merge(NO_REDIS, _set("components.gateway.limits.perPod", True)), None),
    "gateway_one_replica_without_redis": (
        _merge(NO_REDIS, _set("components.gateway", {"replicas": 1, "autoscaling": {"enabled": False}})),
        None,
    ),
    "gateway_redis_url_of_its_own": (
        _merge(NO_REDIS, _set("components.gateway.secretEnv.GATEWAY_REDIS_URL", {"key": "my-redis-url"})),
        None,
    ),
    "redis_external_wins": (_set("redis.external", True), None),
    # Values an API server or a rollout would reject.
    "hpa_min_above_max": (
        _set("components.retrieval.autoscaling", {"minReplicas": 5, "maxReplicas": 3}),
        "components.retrieval.autoscaling: minReplicas 5 is above maxReplicas 3",
    ),
    "cpu_request_above_limit": (
        _set("components.gateway.resources", {"requests": {"cpu": "1500m"}, "limits": {"cpu": 1}}),
        "components.gateway.resources: requests.cpu 1500m is above limits.cpu 1",
    ),
    "memory_request_above_limit": (
        _set("inference.llamacpp.resources", {"requests": {"memory": "3Gi"}, "limits": {"memory": "2048Mi"}}),
        "inference.llamacpp.resources: requests.memory 3Gi is above limits.memory 2048Mi",
    ),
    "redis_memory_request_above_limit": (
        _set("redis.resources.requests.memory", "300M"),
        "redis.resources: requests.memory 300M is above limits.memory 256Mi",
    ),
    "requests_equal_limits_in_other_units": (
        _set("components.guardrails.resources", {"requests": {"cpu": 0.5, "memory": "256Mi"}}),
        None,
    ),
    "pdb_percentage_above_100": (
        _set("components.guardrails.podDisruptionBudget.maxUnavailable", "150%"),
        "components.guardrails.podDisruptionBudget: maxUnavailable 150% is above 100%",
    ),
    "pdb_blocks_drains": (
        _set("components.generation.podDisruptionBudget.maxUnavailable", 0),
        "components.generation.podDisruptionBudget: maxUnavailable 0 lets no pod be evicted",
    ),
    "pdb_blocks_drains_in_percent": (
        _set("components.gateway.podDisruptionBudget.maxUnavailable", "0%"),
        "components.gateway.podDisruptionBudget: maxUnavailable 0% lets no pod be evicted",
    ),
    "inference_pdb_blocks_drains": (
        _set("inference.podDisruptionBudget.maxUnavailable", 0),
        "inference.podDisruptionBudget: maxUnavailable 0 lets no pod be evicted",
    ),
    "pdb_percentage": (_set("components.retrieval.podDisruptionBudget.maxUnavailable", "50%"), None),
    # The longest generation bounds everything on a stream's path.
    "routing_deployment_outlasts_the_graces": (
        _merge(
            _set("global.maxGenerationSeconds", 300),
            _set("components.generation.routing.models.big.deployments", [ROUTE]),
        ),
        'deployment "vllm" of model "big" allows 600 s (timeouts.total; 600 when unset), '
        "above global.maxGenerationSeconds 300",
    ),
    "routing_deployment_within_the_graces": (
        _merge(
            _set("global.maxGenerationSeconds", 300),
            _set(
                "components.generation.routing.models.big.deployments",
                [{**ROUTE, "timeouts": {"total": 300}}],
            ),
        ),
        None,
    ),
    "generation_timeout_override": (
        _set("components.generation.env.GENERATION_TOTAL_TIMEOUT_SECONDS", "900"),
        "GENERATION_TOTAL_TIMEOUT_SECONDS 900 is above global.maxGenerationSeconds 600",
    ),
    "gateway_deadline_override": (
        _set("components.gateway.env.GATEWAY_REQUEST_TIMEOUT_SECONDS", "3600"),
        "GATEWAY_REQUEST_TIMEOUT_SECONDS 3600 is above global.maxGenerationSeconds 600",
    ),
    "hour_long_generations": (
        _merge(
            _set("global.maxGenerationSeconds", 3600),
            _set("components.gateway.env.GATEWAY_REQUEST_TIMEOUT_SECONDS", "3600"),
        ),
        None,
    ),
    # Inference tier.
    "vllm_cache_claim": (VLLM_CACHE_CLAIM, None),
    "vllm_existing_cache_claim": (
        _merge(VLLM_CACHE_CLAIM, _set("inference.vllm.cachePersistence.existingClaim", "models")),
        None,
    ),
    "vllm_single_node_claim_on_two_replicas": (
        _merge(VLLM_CACHE_CLAIM, _set("inference.replicas", 2)),
        "inference.vllm.cachePersistence: one ReadWriteOnce claim cannot serve 2 replicas",
    ),
    "inference_strategy_chosen": (_set("inference.strategy", {"type": "Recreate"}), None),
}


@pytest.fixture(scope="module")
def results(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Case name -> {"error": Helm's message or None, "objects": [...]}, rendered in one process."""
    directory = tmp_path_factory.mktemp("k8s-try")
    for name, (values, _) in CASES.items():
        (directory / f"{name}.json").write_text(json.dumps(values))
    done = subprocess.run(
        [str(K8S_PYTHON), "-m", "k8stools", "try", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {name: json.loads((directory / f"{name}.out.json").read_text()) for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_render_or_fail_with_the_reason(results, name):
    _, message = CASES[name]
    result = results[name]
    if message is None:
        assert result["error"] is None, f"{name} should render: {result['error']}"
        assert result["objects"], name
    else:
        assert result["error"] is not None, f"{name} rendered; it should fail with: {message}"
        assert message in result["error"], result["error"]


# Defaults and ci/ cases: the promises hold.


def _env(objects: list[dict[str, Any]], comp: str) -> dict[str, str]:
    return {k: v["value"] for k, v in container_env(objects, comp).items() if "value" in v}


def test_every_grace_on_a_streams_path_covers_the_longest_generation(rendered):
    for case, objects in rendered.items():
        longest = float(_env(objects, "generation")["GENERATION_TOTAL_TIMEOUT_SECONDS"])
        for comp in GRPC:
            env = _env(objects, comp)
            # A connection that reaches its age lets its open streams finish.
            assert float(env["GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS"]) >= longest, f"{case}: {comp}"
            assert float(env["GRPC_MAX_CONNECTION_AGE_SECONDS"]) <= 3600, f"{case}: {comp}"
        for comp in STREAMING:
            env = _env(objects, comp)
            spec = pod_spec(named(objects, "Deployment", comp))
            pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            # A draining pod gives its open streams the longest generation, and Kubernetes waits
            # for that before it kills the pod.
            assert float(env["SHUTDOWN_GRACE_SECONDS"]) >= longest, f"{case}: {comp}"
            needed = pre_stop + float(env["DRAIN_SECONDS"]) + longest
            assert spec["terminationGracePeriodSeconds"] > needed, f"{case}: {comp}"
        if "GATEWAY_REQUEST_TIMEOUT_SECONDS" in _env(objects, "gateway"):
            assert float(_env(objects, "gateway")["GATEWAY_REQUEST_TIMEOUT_SECONDS"]) <= longest, case


def test_the_default_numbers(rendered):
    """The numbers k8s/README.md documents ("Streams, connection age and rollouts")."""
    objects = rendered["default"]
    assert _env(objects, "generation")["GENERATION_TOTAL_TIMEOUT_SECONDS"] == "600"
    for comp in GRPC:
        env = _env(objects, comp)
        assert (env["GRPC_MAX_CONNECTION_AGE_SECONDS"], env["GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS"]) == (
            "300",
            "600",
        ), comp
    graces = {
        comp: pod_spec(named(objects, "Deployment", comp))["terminationGracePeriodSeconds"] for comp in GRPC
    }
    graces["gateway"] = pod_spec(named(objects, "Deployment", "gateway"))["terminationGracePeriodSeconds"]
    graces["inference"] = pod_spec(named(objects, "Deployment", "inference"))["terminationGracePeriodSeconds"]
    assert graces == {"gateway": 613, "guardrails": 613, "generation": 613, "retrieval": 33, "inference": 33}
    assert _env(objects, "retrieval")["SHUTDOWN_GRACE_SECONDS"] == "20"


def test_a_gateway_of_several_replicas_shares_its_limits_through_redis(rendered):
    for case, objects in rendered.items():
        gateway = named(objects, "Deployment", "gateway")
        hpas = [h for h in of_kind(objects, "HorizontalPodAutoscaler") if component(h) == "gateway"]
        most = hpas[0]["spec"]["maxReplicas"] if hpas else gateway["spec"]["replicas"]
        if most > 1:
            redis_url = container_env(objects, "gateway").get("GATEWAY_REDIS_URL", {})
            assert "secretKeyRef" in redis_url, f"{case}: {most} gateway replicas without Redis"
    # The defaults run the in-chart Redis; an external one replaces it.
    assert named(rendered["default"], "Deployment", "redis")
    external = rendered["external-services-values"]
    assert not [d for d in of_kind(external, "Deployment") if component(d) == "redis"]
    assert "secretKeyRef" in container_env(external, "gateway")["GATEWAY_REDIS_URL"]


def test_notes_ask_for_the_redis_keys_the_default_install_needs(notes):
    assert "redis-password" in notes["default"] and "redis-url" in notes["default"]


def _inference(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return named(objects, "Deployment", "inference")


def test_the_inference_tier_drains_spreads_and_has_a_disruption_budget(rendered):
    for case, objects in rendered.items():
        if not [d for d in of_kind(objects, "Deployment") if component(d) == "inference"]:
            continue
        deployment = _inference(objects)
        spec = pod_spec(deployment)
        container = spec["containers"][0]
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 5, f"{case}: preStop {pre_stop}s"
        assert spec["terminationGracePeriodSeconds"] > pre_stop, case
        [spread] = spec["topologySpreadConstraints"]
        assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], case
        [budget] = [p for p in of_kind(objects, "PodDisruptionBudget") if component(p) == "inference"]
        assert budget["spec"]["selector"] == deployment["spec"]["selector"], case
        assert budget["spec"]["maxUnavailable"] >= 1, case


def test_inference_on_a_gpu_is_replaced_without_a_surge_and_on_cpu_with_one(rendered):
    gpu = _inference(rendered["vllm-gpu-values"])
    assert "nvidia.com/gpu" in pod_spec(gpu)["containers"][0]["resources"]["limits"]
    assert gpu["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    cpu = _inference(rendered["default"])
    assert cpu["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_the_model_cache_can_live_on_a_claim(results):
    objects = results["vllm_cache_claim"]["objects"]
    deployment = _inference(objects)
    [claim] = of_kind(objects, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # A single-node claim: the new pod could not mount it beside the old one.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}

    objects = results["vllm_existing_cache_claim"]["objects"]
    assert not of_kind(objects, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(_inference(objects))["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "models"

    # A strategy in values is used as it is.
    objects = results["inference_strategy_chosen"]["objects"]
    assert _inference(objects)["spec"]["strategy"] == {"type": "Recreate"}


def test_the_default_vllm_cache_is_an_empty_dir(rendered):
    volumes = {v["name"]: v for v in pod_spec(_inference(rendered["vllm-gpu-values"]))["volumes"]}
    assert "emptyDir" in volumes["cache"]
    assert not of_kind(rendered["vllm-gpu-values"], "PersistentVolumeClaim")
