"""Secrets are referenced, never inlined: the chart renders no Secret and no secret values."""

import re

from k8s_objects import containers, of_kind, workloads

SECRET_NAME = re.compile(r"(API_KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL|REDIS_URL)$")


def test_the_chart_renders_no_secret_objects(rendered):
    for case, objects in rendered.items():
        assert not of_kind(objects, "Secret"), f"{case}: a Secret is rendered; reference one instead"


def test_secret_env_vars_come_from_secret_refs_only(rendered):
    for case, objects in rendered.items():
        for configmap in of_kind(objects, "ConfigMap"):
            inlined = [k for k in configmap.get("data", {}) if SECRET_NAME.search(k)]
            assert not inlined, f"{case}: ConfigMap {configmap['metadata']['name']} holds {inlined}"
        for workload in workloads(objects):
            for container in containers(workload):
                for item in container.get("env", []):
                    if SECRET_NAME.search(item["name"]):
                        assert "secretKeyRef" in item.get("valueFrom", {}), (
                            f"{case}: {container['name']} sets {item['name']} inline"
                        )


def test_notes_explain_reaching_the_gateway_and_the_first_api_key(notes):
    for case, text in notes.items():
        assert "create secret generic" in text and "gateway-api-key" in text, case
        assert "port-forward svc/llmsuite-gateway" in text, case
        assert "Authorization: Bearer" in text, case
