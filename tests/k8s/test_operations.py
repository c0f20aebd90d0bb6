"""What an operator runs and relies on: `helm test`, NetworkPolicies that deny by default both ways,
pods rolled by a Secret change, and scaling on more than CPU (a per-pod metric, or KEDA).

Rendered with Helm's engine: the defaults and ci/ cases (conftest), values the chart must refuse
(`python -m k8stools try`), and, for the Secret checksum, copies of the chart whose
templates/_lookup.tpl answers from fixed Secrets instead of a cluster.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from k8s_objects import SERVICES, component, named, of_kind, pod_spec, workloads
from metric_names import KNOWN_METRICS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "charts" / "llmsuite"
K8S_PYTHON = ROOT / "k8s" / ".venv" / "bin" / "python"
GRPC = ("guardrails", "retrieval", "generation")
DNS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def _try(directory: Path, cases: dict[str, dict[str, Any]], chart: Path | None = None) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in cases.items():
        (directory / f"{name}.json").write_text(json.dumps(values))
    argv = [str(K8S_PYTHON), "-m", "k8stools", "try", str(directory), *([str(chart)] if chart else [])]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return {name: json.loads((directory / f"{name}.out.json").read_text()) for name in cases}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["spec"]["template"]["metadata"]["labels"])


def _own_policy(objects: list[dict[str, Any]], comp: str) -> dict[str, Any]:
    found = [p for p in of_kind(objects, "NetworkPolicy") if component(p) == comp]
    assert len(found) == 1, f"{comp}: {len(found)} NetworkPolicies"
    return found[0]


def _egress_to(policy: dict[str, Any]) -> dict[tuple[str, int], list[Any]]:
    """(target component or "*" for peers outside the release, port) -> the peers of the rule."""
    out: dict[tuple[str, int], list[Any]] = {}
    for rule in policy["spec"]["egress"]:
        for port in rule["ports"]:
            peers = rule.get("to", [])
            comps = [
                p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                for p in peers
                if "podSelector" in p and "namespaceSelector" not in p
            ]
            for target in comps or ["*"]:
                out[(target, int(port["port"]))] = peers
    return out


# --- helm test ---------------------------------------------------------------------------------


def _test_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [pod] = [o for o in of_kind(objects, "Pod") if component(o) == "test"]
    return pod


def test_helm_test_checks_the_gateway_and_every_grpc_service(rendered):
    for case, objects in rendered.items():
        pod = _test_pod(objects)
        annotations = pod["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test", case
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"], case
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
        containers = {c["name"]: c for c in spec["containers"]}
        assert set(containers) == {"gateway-readyz", *(f"{s}-health" for s in GRPC)}, case
        gateway = named(objects, "Deployment", "gateway")
        image = pod_spec(gateway)["containers"][0]["image"]
        readyz = containers["gateway-readyz"]["command"]
        assert readyz[-1] == "http://llmsuite-gateway.llmsuite.svc.cluster.local:8080/readyz", case
        tls = "GRPC_TLS_CERT_FILE" in named(objects, "ConfigMap", "gateway")["data"]
        for comp in GRPC:
            container = containers[f"{comp}-health"]
            assert container["image"] == image, "the gateway image has llmsuite_common.grpc_probe"
            argv = container["command"]
            assert argv[:3] == ["python", "-m", "llmsuite_common.grpc_probe"]
            port = named(objects, "Service", comp)["spec"]["ports"][0]["port"]
            host = f"llmsuite-{comp}.llmsuite.svc.cluster.local"
            assert argv[argv.index("--host") + 1] == host and argv[argv.index("--port") + 1] == str(port)
            if tls:
                # Verifies the server for the name callers dial, presents the gateway's certificate.
                assert argv[argv.index("--server-name") + 1] == host, case
                assert argv[argv.index("--cert-file") + 1] == "/etc/llmsuite/tls/tls.crt", case
                [volume] = spec["volumes"]
                assert volume["secret"]["secretName"] == "llmsuite-gateway-tls", case
            else:
                assert "--plaintext" in argv, case
        for container in containers.values():
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"] and container["resources"]["requests"]


def test_the_test_pod_may_reach_what_it_checks_and_nothing_else(rendered):
    for case, objects in rendered.items():
        policy = _own_policy(objects, "test")
        assert policy["spec"]["ingress"] == [], case
        targets = set(_egress_to(policy))
        expected = {
            ("gateway", 8080),
            *((s, int(named(objects, "Service", s)["spec"]["ports"][0]["port"])) for s in GRPC),
        }
        assert targets - {("*", 53)} == expected, case
        # ... and what it checks admits it.
        for comp in GRPC:
            admitted = {
                peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                for rule in _own_policy(objects, comp)["spec"]["ingress"]
                for peer in rule.get("from", [])
            }
            assert "test" in admitted, f"{case}: {comp} does not admit the test pod"


def test_the_test_hook_stays_out_of_the_plain_manifests():
    kustomization = (ROOT / "k8s/manifests/kustomization.yaml").read_text()
    assert "helm-hooks.yaml" not in kustomization
    hooks = (ROOT / "k8s/manifests/helm-hooks.yaml").read_text()
    assert "helm.sh/hook: test" in hooks
    others = [p for p in (ROOT / "k8s/manifests").glob("*.yaml") if p.name != "helm-hooks.yaml"]
    assert not [p.name for p in others if "helm.sh/hook" in p.read_text()]


# --- NetworkPolicies: default deny, explicit egress ----------------------------------------------


def test_every_pod_denies_by_default_both_ways_and_resolves_names(rendered):
    for case, objects in rendered.items():
        for workload in workloads(objects):
            comp = component(workload)
            policy = _own_policy(objects, comp)
            assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], f"{case}: {comp}"
            rules = policy["spec"]["egress"]
            assert rules and rules[0]["ports"] == DNS, f"{case}: {comp} cannot resolve names"
            assert rules[0]["to"] == [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ], case
            # No rule opens every port: each names its ports.
            assert all(rule.get("ports") for rule in rules), f"{case}: {comp} has a rule without ports"


def test_egress_follows_the_call_graph(rendered):
    """Each pod reaches the parts it calls on their ports, and each of those admits it there."""
    expected = {
        "gateway": {("guardrails", 50061), ("retrieval", 50062), ("generation", 50063)},
        "guardrails": set(),
        "retrieval": set(),
        "generation": set(),
        "redis": set(),
        "postgresql": set(),
        "inference": set(),
        "gateway-migrate": set(),
        "retrieval-migrate": set(),
    }
    for case, objects in rendered.items():
        names = {component(w) for w in workloads(objects)}
        for comp in names:
            policy = _own_policy(objects, comp)
            inside = {k for k in _egress_to(policy) if k[0] != "*"}
            assert expected[comp] <= inside, f"{case}: {comp} reaches {inside}"
            for target, port in inside:
                admitted = [
                    rule
                    for rule in _own_policy(objects, target)["spec"].get("ingress", [])
                    if port in {p["port"] for p in rule["ports"]}
                    and (
                        not rule.get("from")
                        or comp
                        in {
                            peer.get("podSelector", {})
                            .get("matchLabels", {})
                            .get("app.kubernetes.io/component")
                            for peer in rule["from"]
                        }
                    )
                ]
                assert admitted, f"{case}: {comp} may call {target}:{port}, which does not admit it"


def test_data_stores_in_the_release_by_labels_outside_by_port(rendered):
    default, trial, external = (
        rendered["default"],
        rendered["trial-values"],
        rendered["external-services-values"],
    )
    # Redis in the chart (defaults): the gateway reaches its pods; external: any address on 6379.
    assert ("redis", 6379) in _egress_to(_own_policy(default, "gateway"))
    assert ("*", 6379) in _egress_to(_own_policy(external, "gateway"))
    assert ("redis", 6379) not in _egress_to(_own_policy(external, "gateway"))
    # PostgreSQL outside the release (defaults) for retrieval and the gateway; in it (trial).
    for comp in ("retrieval", "gateway"):
        assert _egress_to(_own_policy(default, comp))[("*", 5432)] == [], comp
        assert ("postgresql", 5432) in _egress_to(_own_policy(trial, comp)), comp
    # Nothing else reaches the data stores, and they reach nothing but DNS.
    assert not [c for c in ("guardrails", "generation") if ("*", 5432) in _egress_to(_own_policy(default, c))]
    for comp in ("redis", "postgresql"):
        objects = trial
        assert set(_egress_to(_own_policy(objects, comp))) == {("*", 53)}, comp


def test_upstream_model_endpoints_from_values(rendered):
    # The in-chart inference server, by its labels, on its port.
    assert set(_egress_to(_own_policy(rendered["default"], "generation"))) == {("*", 53), ("inference", 8081)}
    # upstreamBaseUrl https://api.openai.example.test/v1: port 443, any address (egress.upstream.to).
    external = _egress_to(_own_policy(rendered["external-services-values"], "generation"))
    assert set(external) == {("*", 53), ("*", 443)}
    # Routing deployments: the in-chart server by labels; http://vllm...:8000 and https://... by port.
    routing = _egress_to(_own_policy(rendered["generation-routing-values"], "generation"))
    assert set(routing) == {("*", 53), ("inference", 8081), ("*", 8000), ("*", 443)}
    # vLLM fetches its model from the hub (HTTPS); the llama.cpp server has it in the image.
    assert set(_egress_to(_own_policy(rendered["vllm-gpu-values"], "inference"))) == {("*", 53), ("*", 443)}
    assert set(_egress_to(_own_policy(rendered["default"], "inference"))) == {("*", 53)}


def test_otlp_egress_follows_the_collector_endpoint(rendered):
    for comp in SERVICES:
        # trial-values: http://otel-collector.observability.svc:4317
        assert ("*", 4317) in _egress_to(_own_policy(rendered["trial-values"], comp)), comp
        assert not [k for k in _egress_to(_own_policy(rendered["default"], comp)) if k[1] == 4317], comp


@pytest.fixture(scope="module")
def egress_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    peers = [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    return _try(
        tmp_path_factory.mktemp("egress"),
        {
            "narrowed": {
                "global": {"otel": {"endpoint": "https://otlp.example.test"}},
                "networkPolicy": {
                    "egress": {
                        "postgresql": {"to": peers, "ports": [6432]},
                        "otlp": {"to": peers},
                    }
                },
                "components": {
                    "retrieval": {"egress": [{"to": peers, "ports": [{"protocol": "TCP", "port": 443}]}]}
                },
            },
            "off": {"networkPolicy": {"enabled": False}},
        },
    )


def test_egress_peers_and_ports_from_values(egress_values):
    objects = egress_values["narrowed"]["objects"]
    retrieval = _egress_to(_own_policy(objects, "retrieval"))
    peers = [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert retrieval[("*", 6432)] == peers and ("*", 5432) not in retrieval
    # The endpoint names no port: https's 443, the collector's peers; retrieval's own rule adds 443 too.
    assert retrieval[("*", 443)] == peers
    assert _egress_to(_own_policy(objects, "guardrails"))[("*", 443)] == peers
    assert not of_kind(egress_values["off"]["objects"], "NetworkPolicy")


# --- a Secret change rolls the pods that read it -------------------------------------------------

SECRETS = {
    "llmsuite": {
        "data": {
            "gateway-api-key": "a2V5LTE=",
            "redis-url": "cmVkaXM6Ly8=",
            "redis-password": "cHc=",
            "retrieval-database-url": "cG9zdGdyZXNxbDovLw==",
        }
    },
    "llmsuite-token-public-keys": {"data": {"jwks.json": "eyJrZXlzIjogW119"}},
    "llmsuite-token-signing-key": {"data": {"signing-key.pem": "LS0tLS0="}},
}


def _chart_with_secrets(directory: Path, secrets: dict[str, Any]) -> Path:
    """A copy of the chart whose lookup of a Secret answers from `secrets`."""
    chart = directory / "llmsuite"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "_lookup.tpl").write_text(
        '{{- define "llmsuite.lookupSecret" -}}\n'
        f"{{{{- $secrets := `{json.dumps(secrets)}` | fromJson -}}}}\n"
        "{{- toJson (get $secrets .name | default dict) -}}\n"
        "{{- end -}}\n"
    )
    return chart


def _with(secret: str, key: str, value: str) -> dict[str, Any]:
    changed = json.loads(json.dumps(SECRETS))
    changed[secret]["data"][key] = value
    return changed


@pytest.fixture(scope="module")
def checksums(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    """Variant -> component -> its pods' checksum/secrets (None: no annotation)."""
    variants = {
        "before": SECRETS,
        "api-key-changed": _with("llmsuite", "gateway-api-key", "a2V5LTI="),
        "public-keys-changed": _with("llmsuite-token-public-keys", "jwks.json", "eyJrZXlzIjogWzFdfQ=="),
        "unread-key-changed": _with("llmsuite", "some-other-key", "eA=="),
    }
    out: dict[str, dict[str, str | None]] = {}
    cases = {"defaults": {}, "off": {"secrets": {"rollOnChange": False}}}
    for variant, secrets in variants.items():
        base = tmp_path_factory.mktemp(f"secrets-{variant}")
        results = _try(base / "values", cases, _chart_with_secrets(base, secrets))
        for case, result in results.items():
            assert result["error"] is None, result["error"]
            out[f"{variant}/{case}"] = {
                component(w): w["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/secrets")
                for w in workloads(result["objects"])
            }
    return out


def test_a_secret_change_rolls_the_pods_that_read_it(checksums):
    before = checksums["before/defaults"]
    assert all(before[c] for c in (*SERVICES, "redis")), before
    api_key = checksums["api-key-changed/defaults"]
    assert {c for c in before if before[c] != api_key[c]} == {"gateway"}
    public_keys = checksums["public-keys-changed/defaults"]
    assert {c for c in before if before[c] != public_keys[c]} == set(GRPC)
    # A key no pod reads changes nothing.
    assert checksums["unread-key-changed/defaults"] == before
    # The llama.cpp server reads no Secret.
    assert before["inference"] is None


def test_no_checksum_offline_or_when_turned_off(rendered, checksums):
    assert set(checksums["before/off"].values()) == {None}
    for case, objects in rendered.items():
        for workload in workloads(objects):
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            assert "checksum/secrets" not in annotations, f"{case}: lookup found nothing offline"


# --- scaling on more than CPU ----------------------------------------------------------------------


def test_a_pods_metric_next_to_cpu(rendered):
    objects = rendered["scaling-values"]
    [hpa] = [h for h in of_kind(objects, "HorizontalPodAutoscaler") if component(h) == "gateway"]
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["resource"]["name"] == "cpu"
    assert metrics[1] == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "llmsuite_gateway_streams_in_flight"},
            "target": {"type": "AverageValue", "averageValue": "50"},
        },
    }
    assert "llmsuite_gateway_streams_in_flight" in KNOWN_METRICS


def test_keda_replaces_the_hpa(rendered):
    objects = rendered["scaling-values"]
    assert not [h for h in of_kind(objects, "HorizontalPodAutoscaler") if component(h) == "generation"]
    [scaled] = of_kind(objects, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and component(scaled) == "generation"
    spec = scaled["spec"]
    deployment = named(objects, "Deployment", "generation")
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    cpu, prometheus = spec["triggers"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    assert prometheus["type"] == "prometheus"
    assert prometheus["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": 'sum(llmsuite_generation_upstream_in_flight{namespace="llmsuite", pod=~"llmsuite-generation-.*"})',
        "threshold": "32",
    }
    assert "llmsuite_generation_upstream_in_flight" in KNOWN_METRICS
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    # The defaults: no ScaledObject anywhere.
    assert not of_kind(rendered["default"], "ScaledObject")


KEDA = {
    "enabled": True,
    "serverAddress": "http://prometheus:9090",
    "metric": "",
    "threshold": "5",
    "query": "",
}
SCALING_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "keda_without_prometheus": (
        {"components": {"generation": {"autoscaling": {"keda": {**KEDA, "serverAddress": ""}}}}},
        "components.generation.autoscaling.keda.serverAddress is empty",
    ),
    "keda_without_autoscaling": (
        {"components": {"gateway": {"autoscaling": {"enabled": False, "keda": {**KEDA, "metric": "x"}}}}},
        "components.gateway.autoscaling.keda is enabled but autoscaling is not",
    ),
    "keda_without_a_metric": (
        {"components": {"retrieval": {"autoscaling": {"keda": KEDA}}}},
        "components.retrieval.autoscaling.keda names neither a metric nor a query",
    ),
    "keda_query_of_your_own": (
        {"components": {"retrieval": {"autoscaling": {"keda": {**KEDA, "query": "sum(up)"}}}}},
        None,
    ),
    "pods_metric_without_target": (
        {
            "components": {
                "gateway": {"autoscaling": {"podsMetric": {"name": "llmsuite_gateway_streams_in_flight"}}}
            }
        },
        "averageValue",
    ),
}


@pytest.fixture(scope="module")
def scaling_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _try(tmp_path_factory.mktemp("scaling"), {n: v for n, (v, _) in SCALING_CASES.items()})


@pytest.mark.parametrize("name", sorted(SCALING_CASES))
def test_scaling_values_render_or_fail_with_the_reason(scaling_results, name):
    _, message = SCALING_CASES[name]
    result = scaling_results[name]
    if message is None:
        assert result["error"] is None, result["error"]
        [scaled] = of_kind(result["objects"], "ScaledObject")
        assert scaled["spec"]["triggers"][1]["metadata"]["query"] == "sum(up)"
    else:
        assert result["error"] and message in result["error"], result["error"]
