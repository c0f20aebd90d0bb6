"""k8s/manifests: the default render, one file per component, plus a kustomization."""

from pathlib import Path
from typing import Any

import yaml

from .paths import MANIFESTS, NAMESPACE
from .render import documents

HEADER = "# Rendered from k8s/charts/llmsuite with default values by `make manifests`. Do not edit.\n"

NAMESPACE_DOC = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": NAMESPACE,
        # Every pod of the suite meets the restricted Pod Security Standard; enforce it.
        "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        },
    },
}


def component_of(obj: dict[str, Any]) -> str:
    labels = obj.get("metadata", {}).get("labels", {})
    return str(labels.get("app.kubernetes.io/component", "release"))


# Helm hooks (the database migration Jobs, the `helm test` pod) run when Helm says, not with the
# release: kept apart and out of the kustomization.
HOOKS = "helm-hooks.yaml"
HOOKS_HEADER = (
    "# Helm hooks (database migrations, helm test), rendered from k8s/charts/llmsuite by `make manifests`.\n"
    "# Do not edit. Not in kustomization.yaml: apply the migration Jobs (-l 'app.kubernetes.io/component\n"
    "# in (gateway-migrate,retrieval-migrate)') and wait for them before the kustomization, the test pod\n"
    "# (-l app.kubernetes.io/component=test) after it (k8s/README.md).\n"
)


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})


def files(rendered: dict[str, str]) -> dict[str, str]:
    """File name -> content for the whole k8s/manifests directory."""
    grouped: dict[str, list[str]] = {}
    hooks: list[str] = []
    for _, text, obj in documents(rendered):
        if is_hook(obj):
            hooks.append(text)
        else:
            grouped.setdefault(f"{component_of(obj)}.yaml", []).append(text)
    out = {"namespace.yaml": HEADER + yaml.safe_dump(NAMESPACE_DOC, sort_keys=False)}
    out |= {name: HEADER + "---\n".join(docs) for name, docs in sorted(grouped.items())}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # The gRPC targets inside the ConfigMaps name this namespace; re-render to change it.
        "namespace": NAMESPACE,
        "resources": sorted(out),
    }
    if hooks:
        out[HOOKS] = HOOKS_HEADER + "---\n".join(hooks)
    out["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return out


def write(rendered: dict[str, str], directory: Path = MANIFESTS) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = files(rendered)
    for stale in directory.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, content in wanted.items():
        (directory / name).write_text(content)
    return sorted(wanted)


def stale(rendered: dict[str, str], directory: Path = MANIFESTS) -> list[str]:
    """Files that differ from a fresh render (missing, changed or extra)."""
    wanted = files(rendered)
    present = {p.name: p.read_text() for p in directory.glob("*.yaml")} if directory.is_dir() else {}
    return sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
