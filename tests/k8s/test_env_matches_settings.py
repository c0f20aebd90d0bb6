"""The chart, `make run` and the services agree on configuration.

Every env var the chart gives a service is a field of that service's settings class, its value
parses with that class, and every var the local suite (`make run`) sets is one the chart sets too,
so a local run rehearses the cluster's configuration.
"""

from pathlib import Path

import pytest
from k8s_objects import SERVICES, container_env
from settings_fields import env_names, secret_fields, settings_class

# Set by `make run` only, with the reason the chart does not need them.
LOCAL_ONLY = {
    "RETRIEVAL_PGSERVER_DATA_DIR": "the embedded PostgreSQL; in a cluster retrieval gets a DSN",
    "GATEWAY_PGSERVER_DATA_DIR": "the embedded PostgreSQL; in a cluster the gateway gets a DSN",
    "OTEL_BSP_SCHEDULE_DELAY": "OpenTelemetry SDK knob so short local runs export promptly",
}
# Set by `make run` on one service only, with the reason the chart leaves it out there.
LOCAL_ONLY_ON = {
    ("gateway", "GRPC_AUTH_PUBLIC_KEYS_FILE"): "`make run` gives every service the public keys; "
    "the gateway signs tokens and verifies none, so the chart mounts only its signing key",
}
# Wired by the chart ahead of the service that will read them; remove an entry once it does.
PENDING: dict[str, str] = {}
# Variables read by libraries rather than by a settings class.
LIBRARY_VARS = {"OTEL_BSP_SCHEDULE_DELAY"}
# Stand-ins for secret values: the chart only names Secret keys.
SECRET_STANDINS = {
    "RETRIEVAL_DATABASE_URL": "postgresql://llmsuite:pw@db.example.test:5432/llmsuite",
    "GATEWAY_REDIS_URL": "redis://:pw@redis.example.test:6379/0",
    "GATEWAY_DATABASE_URL": "postgresql://llmsuite:pw@db.example.test:5432/llmsuite",
    "GENERATION_UPSTREAM_API_KEYS": '{"hosted": "sk-stand-in"}',
}


@pytest.mark.parametrize("service", SERVICES)
def test_chart_env_names_are_settings_fields(rendered, service):
    fields = env_names(settings_class(service))
    for case, objects in rendered.items():
        unknown = sorted(set(container_env(objects, service)) - fields - set(PENDING))
        assert not unknown, f"{case}: the chart sets {unknown} on {service}, which its settings class lacks"


@pytest.mark.parametrize("service", SERVICES)
def test_secret_settings_come_from_secrets(rendered, service):
    secrets = secret_fields(settings_class(service))
    for case, objects in rendered.items():
        for name, source in container_env(objects, service).items():
            if name in secrets:
                assert "secretKeyRef" in source, f"{case}: {service} {name} is a secret but set inline"


@pytest.mark.parametrize("service", SERVICES)
def test_chart_values_parse_with_the_settings_class(rendered, service, monkeypatch):
    cls = settings_class(service)
    for case, objects in rendered.items():
        env = container_env(objects, service)
        for name in env_names(cls):
            monkeypatch.delenv(name, raising=False)
        for name, source in env.items():
            if name in PENDING:
                continue
            if "secretKeyRef" in source:
                value = SECRET_STANDINS.get(name, f"stand-in-{source['secretKeyRef']['key']}")
            else:
                value = source["value"]
            monkeypatch.setenv(name, value)
        settings = cls()
        assert settings.otel_service_name == service, case
        assert settings.port == int(env["PORT"]["value"]), case


def test_pending_vars_are_not_yet_settings_fields():
    fields = set().union(*(env_names(settings_class(s)) for s in SERVICES))
    done = sorted(set(PENDING) & fields)
    assert not done, f"{done} are settings fields now: drop them from PENDING"


def local_envs() -> dict[str, dict[str, str]]:
    from llmsuite_testkit.processes import python_service

    from tools.localsuite.suite import SuiteConfig, service_envs

    cfg = SuiteConfig(api_key="local", data_dir=Path(".data"), otlp_endpoint="http://127.0.0.1:4317")
    envs = service_envs(cfg)
    return {
        name: python_service(name, getattr(cfg.ports, name), envs[name], Path(".run")).env
        for name in SERVICES
    }


@pytest.mark.parametrize("service", SERVICES)
def test_make_run_sets_only_what_the_chart_sets(rendered, service):
    local = set(local_envs()[service])
    chart = set(container_env(rendered["default"], service))
    fields = env_names(settings_class(service))
    assert local - fields - LIBRARY_VARS == set(), f"`make run` sets unknown vars on {service}"
    only_here = {name for svc, name in LOCAL_ONLY_ON if svc == service}
    missing = sorted(local - chart - set(LOCAL_ONLY) - only_here)
    assert not missing, f"`make run` sets {missing} on {service}; the chart does not"


def test_every_local_only_var_is_still_used_locally():
    envs = local_envs()
    used = set().union(*(set(env) for env in envs.values()))
    assert set(LOCAL_ONLY) <= used, f"stale LOCAL_ONLY entries: {sorted(set(LOCAL_ONLY) - used)}"
    stale = sorted(key for key in LOCAL_ONLY_ON if key[1] not in envs[key[0]])
    assert not stale, f"stale LOCAL_ONLY_ON entries: {stale}"
