"""Small accessors over rendered Kubernetes objects, shared by the tests in this folder."""

from collections.abc import Iterator
from typing import Any

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SERVICES = ("gateway", "guardrails", "retrieval", "generation")


def component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def named(objects: list[dict[str, Any]], kind: str, comp: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if component(o) == comp]
    assert len(found) == 1, f"expected one {kind} for {comp}, found {len(found)}"
    return found[0]


def container_env(objects: list[dict[str, Any]], comp: str) -> dict[str, dict[str, Any]]:
    """Env var name -> {"value": ...} or {"secretKeyRef": ...} for a service's main container,
    ConfigMaps from envFrom included (explicit env wins, as in Kubernetes)."""
    workload = named(objects, "Deployment", comp)
    container = pod_spec(workload)["containers"][0]
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objects, "ConfigMap")}
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in configmaps, f"{comp}: envFrom names ConfigMap {ref}, which the chart does not render"
        env |= {k: {"value": v, "from": "configmap"} for k, v in configmaps[ref].items()}
    for item in container.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = dict(item["valueFrom"])
        else:
            env[item["name"]] = {"value": item.get("value", ""), "from": "env"}
    return env
