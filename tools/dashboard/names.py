"""Metric names a PromQL expression reads, and the series names a /metrics page exports."""

from collections.abc import Iterable

import promql_parser
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# Series each metric type exposes in the text format (prometheus_client's `_created` left out:
# no query reads it).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """The expression as Grafana sends it, for a source whose series carry no namespace label."""
    return expr.replace("$__rate_interval", rate_interval).replace("$namespace", ".*")


def referenced(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return found


def family_series(name: str, kind: str) -> set[str]:
    """Series names a metric family of this type exposes (a counter `x`: `x_total`)."""
    if kind == "counter" and name.endswith("_total"):
        return {name}
    return {name + suffix for suffix in _SUFFIXES.get(kind, ("",))}


def series_names(families: Iterable[Metric]) -> set[str]:
    """Every series name the families expose, including those of labelled metrics with no
    children yet (their HELP and TYPE lines are there before the first observation)."""
    names: set[str] = set()
    for family in families:
        names |= family_series(family.name, family.type)
        names |= {sample.name for sample in family.samples}
    return names


def exported(text: str) -> set[str]:
    return series_names(text_string_to_metric_families(text))
