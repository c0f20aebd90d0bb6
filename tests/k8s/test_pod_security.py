"""Every pod the chart renders, in every values case, meets the restricted Pod Security Standard."""

from typing import Any

from k8s_objects import containers, pod_spec, workloads


def _all_workloads(rendered: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    found = [(case, w) for case, objects in rendered.items() for w in workloads(objects)]
    assert found, "no workloads rendered"
    return found


def test_pods_run_as_non_root_with_runtime_default_seccomp(rendered):
    for case, workload in _all_workloads(rendered):
        where = f"{case}: {workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert isinstance(pod.get("runAsUser"), int) and pod["runAsUser"] > 0, where
        assert pod.get("seccompProfile", {}).get("type") in {"RuntimeDefault", "Localhost"}, where
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(forbidden), f"{where}: {forbidden}"
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"


def test_containers_drop_all_capabilities_and_never_escalate(rendered):
    for case, workload in _all_workloads(rendered):
        for container in containers(workload):
            where = f"{case}: {workload['metadata']['name']}/{container['name']}"
            ctx = container.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not ctx.get("capabilities", {}).get("add"), where
            assert not ctx.get("privileged"), where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("runAsUser", 1) != 0, where
            assert not any("hostPort" in p for p in container.get("ports", [])), where


def test_service_account_tokens_are_not_mounted(rendered):
    for case, workload in _all_workloads(rendered):
        assert pod_spec(workload).get("automountServiceAccountToken") is False, (
            f"{case}: {workload['metadata']['name']} mounts an API token it never uses"
        )
