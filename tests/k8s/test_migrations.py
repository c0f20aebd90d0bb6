"""Database migrations as Helm hooks: one Job per database-owning service runs its image's migrate
command under the DDL-capable DSN key, before the release's pods change, with the services' pod
security; the services themselves only check the schema (MIGRATE_ON_START false) with their own
DSN; the in-chart PostgreSQL creates the services' row-only role and admits the Jobs."""

from typing import Any

import yaml
from k8s_objects import container_env, named, of_kind, pod_spec
from test_operations import ROOT

OWNERS = {"gateway": "gateway-database-migrate-url", "retrieval": "retrieval-database-migrate-url"}


def _job(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return named(objects, "Job", f"{name}-migrate")


def test_each_database_owner_has_a_pre_install_pre_upgrade_migration_job(rendered):
    for case, objects in rendered.items():
        in_chart_db = any(
            o["kind"] == "StatefulSet" and "postgresql" in o["metadata"]["name"] for o in objects
        )
        for name, key in OWNERS.items():
            job = _job(objects, name)
            notes = job["metadata"]["annotations"]
            # The in-chart database is a release object: it exists only after the install.
            hook = "post-install,pre-upgrade" if in_chart_db else "pre-install,pre-upgrade"
            assert notes["helm.sh/hook"] == hook, case
            assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
            assert int(notes["helm.sh/hook-weight"]) == (0 if name == "gateway" else 1)
            spec = pod_spec(job)
            assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
            assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]
            [container] = spec["containers"]
            assert container["command"] == ["python", "-m", f"{name}_service.migrate"]
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
            assert not security["allowPrivilegeEscalation"]
            env = {e["name"]: e for e in container["env"]}
            ref = env[f"{name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == key, case
            # The image's own, not the service's: it reads and writes none of the services' settings.
            assert f"{name.upper()}_DATABASE_MIGRATE_ON_START" not in env


def test_services_only_check_the_schema_with_their_own_dsn(rendered):
    for case, objects in rendered.items():
        for name in OWNERS:
            env = container_env(objects, name)
            assert env[f"{name.upper()}_DATABASE_MIGRATE_ON_START"]["value"] == "false", case
            assert env[f"{name.upper()}_DATABASE_URL"]["secretKeyRef"]["key"] == f"{name}-database-url", case


def test_the_in_chart_postgresql_creates_the_row_only_role_and_admits_the_jobs(rendered):
    objects = rendered["trial-values"]
    [init] = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("postgresql-init")]
    script = init["data"]["10-app-role.sh"]
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES" in script
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in script
    policy = named(objects, "NetworkPolicy", "postgresql")
    callers = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "podSelector" in peer
    }
    assert {"gateway-migrate", "retrieval-migrate"} <= callers


def test_plain_manifests_keep_the_jobs_with_the_hooks():
    hooks = list(yaml.safe_load_all((ROOT / "k8s/manifests/helm-hooks.yaml").read_text()))
    jobs = [o["metadata"]["name"] for o in hooks if o and o["kind"] == "Job"]
    assert sorted(jobs) == ["llmsuite-gateway-migrate", "llmsuite-retrieval-migrate"]
