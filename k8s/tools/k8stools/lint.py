"""`helm lint --strict` through the Helm Go SDK, for each values case and Kubernetes version."""

from typing import Any

import helm_python as helm

from .paths import CHART

ERROR, WARNING = 3, 2


def lint(values: dict[str, Any] | None, kube_version: str) -> list[str]:
    """Problems Helm reports (warnings count: strict mode), empty when the chart is clean."""
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{kube_version}")
    problems = [f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= WARNING]
    problems += [e.strip() for e in report.get("errors") or [] if not any(e.strip() in p for p in problems)]
    return problems
