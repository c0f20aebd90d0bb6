"""Render the chart with Helm's own engine (helm-python-sdk wraps the Helm Go SDK)."""

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from .paths import CHART, CI_VALUES, NAMESPACE, RELEASE

DEFAULT_CASE = "default"


def cases() -> dict[str, dict[str, Any] | None]:
    """The default values plus every file under ci/, by name."""
    found: dict[str, dict[str, Any] | None] = {DEFAULT_CASE: None}
    for path in sorted(CI_VALUES.glob("*.yaml")):
        found[path.stem] = yaml.safe_load(path.read_text()) or {}
    return found


def render(values: dict[str, Any] | None, chart: Path = CHART) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce (schema checked first)."""
    with helm.Chart.load(str(chart)) as loaded:
        loaded.validate_schema(values)
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(template, text, object) for every Kubernetes object, in template order; NOTES excluded."""
    out = []
    for template in sorted(rendered):
        if template.endswith("NOTES.txt"):
            continue
        for text in rendered[template].split("\n---"):
            obj = yaml.safe_load(text)
            if obj:
                out.append((template, text.strip("\n-") + "\n", obj))
    return out
