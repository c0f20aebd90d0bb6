"""Guardrails policies in the chart are valid policy documents, mounted where the service reads them."""

from pathlib import PurePosixPath

from guardrails_service.policy_files import parse_policy
from k8s_objects import container_env, named, of_kind, pod_spec


def test_policy_configmaps_parse_and_are_mounted_at_the_policy_dir(rendered):
    seen = 0
    for case, objects in rendered.items():
        maps = [
            o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-guardrails-policies")
        ]
        env = container_env(objects, "guardrails")
        if not maps:
            assert "GUARDRAILS_POLICY_DIR" not in env, case
            continue
        (cm,) = maps
        for filename, text in cm["data"].items():
            assert filename.endswith(".yaml")
            parse_policy(text, suffix=".yaml")
            seen += 1
        container = pod_spec(named(objects, "Deployment", "guardrails"))["containers"][0]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "policies"]
        assert mount["readOnly"] and PurePosixPath(env["GUARDRAILS_POLICY_DIR"]["value"]) == PurePosixPath(
            mount["mountPath"]
        )
        volumes = {v["name"]: v for v in pod_spec(named(objects, "Deployment", "guardrails"))["volumes"]}
        assert volumes["policies"]["configMap"]["name"] == cm["metadata"]["name"]
    assert seen >= 2, "a ci/ values case should carry guardrails policies"
