"""The chart's PrometheusRule groups as a rule file a local Prometheus loads.

Rendered by Helm's engine in k8s/.venv (`python -m k8stools try`, see k8s/k8s.mk) with the default
values plus metrics.prometheusRule.enabled: release and namespace "llmsuite", the labels
tools.dashboard.prometheus gives the local targets.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_PYTHON = ROOT / "k8s" / ".venv" / "bin" / "python"
VALUES = {"metrics": {"prometheusRule": {"enabled": True}}}


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")


def render(directory: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Writes DIRECTORY/llmsuite-rules.yaml; returns its path and the groups in it."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(["make", "-s", "--no-print-directory", "-f", "k8s/k8s.mk", "k8s-venv"])
    (directory / "values.json").write_text(json.dumps(VALUES))
    _run([str(K8S_PYTHON), "-m", "k8stools", "try", str(directory)])
    result = json.loads((directory / "values.out.json").read_text())
    if result["error"]:
        raise RuntimeError(f"the chart refused {VALUES}: {result['error']}")
    rules = [o for o in result["objects"] if o["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rules[0]["spec"]["groups"]
    path = directory / "llmsuite-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=200))
    return path, groups
