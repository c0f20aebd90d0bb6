"""The root filesystem is read-only: every directory a service writes must be a mounted volume."""

from pathlib import PurePosixPath

import pytest
from k8s_objects import SERVICES, container_env, named, pod_spec
from settings_fields import settings_class

# Directory settings a cluster deployment never uses, and why.
UNUSED_IN_CLUSTER = {
    "RETRIEVAL_PGSERVER_DATA_DIR": "only without RETRIEVAL_DATABASE_URL, which the chart always sets",
    "RETRIEVAL_EMBEDDING_MODEL_DIR": "read, not written; empty selects the model packaged in the image",
    "GUARDRAILS_POLICY_DIR": "read, not written: policy files mounted read-only from a ConfigMap",
    "GATEWAY_PGSERVER_DATA_DIR": "local runs only; in a cluster the gateway gets GATEWAY_DATABASE_URL",
}


@pytest.mark.parametrize("service", SERVICES)
def test_directory_settings_point_into_writable_volumes(rendered, service):
    cls = settings_class(service)
    dir_fields = {name.upper(): f.default for name, f in cls.model_fields.items() if name.endswith("_dir")}
    for case, objects in rendered.items():
        env = container_env(objects, service)
        container = pod_spec(named(objects, "Deployment", service))["containers"][0]
        mounts = [
            PurePosixPath(m["mountPath"]) for m in container.get("volumeMounts", []) if not m.get("readOnly")
        ]
        for name, default in dir_fields.items():
            if name in UNUSED_IN_CLUSTER:
                continue
            value = env[name]["value"] if name in env else default
            path = PurePosixPath(str(value))
            assert path.is_absolute() and any(path.is_relative_to(m) for m in mounts), (
                f"{case}: {service} writes {name}={value!r}, which is not under a writable volume {mounts}"
            )


def test_every_unused_directory_setting_still_exists():
    fields = set().union(*({n.upper() for n in settings_class(s).model_fields} for s in SERVICES))
    assert set(UNUSED_IN_CLUSTER) <= fields, sorted(set(UNUSED_IN_CLUSTER) - fields)
