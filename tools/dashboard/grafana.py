"""Grafana dashboard JSON from tools.dashboard.panels, shipped in the Helm chart.

python -m tools.dashboard.grafana --write   # rewrite the chart's copy
python -m tools.dashboard.grafana --check   # exit 1 when it is stale
"""

import json
import sys
from pathlib import Path
from typing import Any

from .panels import PANELS, Panel

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_JSON = ROOT / "k8s" / "charts" / "llmsuite" / "dashboards" / "llmsuite.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH, HEIGHT, PER_ROW = 8, 8, 3


def _panel(panel: Panel, ident: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "min": 0}
    if panel.thresholds:
        steps = [{"color": "green", "value": None}] + [{"color": "red", "value": v} for v in panel.thresholds]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "id": ident,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend, "refId": chr(ord("A") + i)}
            for i, t in enumerate(panel.targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    ident, y, row, column = 1, 0, None, 0
    for panel in PANELS:
        if panel.row != row:
            if column:
                y += HEIGHT
            row, column = panel.row, 0
            panels.append(
                {"id": ident, "type": "row", "title": row, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
            )  # fmt: skip
            ident, y = ident + 1, y + 1
        if column == PER_ROW:
            y, column = y + HEIGHT, 0
        panels.append(_panel(panel, ident, column * WIDTH, y))
        ident, column = ident + 1, column + 1
    return {
        "uid": "llmsuite-overview",
        "title": "llmsuite",
        "description": "Gateway traffic, latency and errors; gRPC backends; guardrails and caches.",
        "tags": ["llmsuite"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": "label_values(llmsuite_gateway_requests_total, namespace)",
                        "refId": "ns",
                    },
                    "definition": "label_values(llmsuite_gateway_requests_total, namespace)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        DASHBOARD_JSON.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD_JSON.write_text(text())
        print(f"wrote {DASHBOARD_JSON.relative_to(ROOT)}")
        return 0
    if argv == ["--check"]:
        fresh = DASHBOARD_JSON.is_file() and DASHBOARD_JSON.read_text() == text()
        print(f"{DASHBOARD_JSON.relative_to(ROOT)}: {'up to date' if fresh else 'stale; run --write'}")
        return 0 if fresh else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
