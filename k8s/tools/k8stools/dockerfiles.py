"""Parse the Dockerfiles with BuildKit's own parser (the `dockerfile` package) for tests/k8s."""

from pathlib import Path
from typing import Any

import dockerfile

from .paths import ROOT


def parse(path: Path) -> list[dict[str, Any]]:
    return [
        {"cmd": c.cmd, "value": list(c.value), "flags": list(c.flags), "json": c.json, "line": c.start_line}
        for c in dockerfile.parse_file(str(path))
    ]


def parse_all(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    return {str(p.relative_to(ROOT)): parse(p) for p in paths}
