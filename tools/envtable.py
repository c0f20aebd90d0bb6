"""The environment-variable table of docs/configuration.md, generated from the settings classes.

`python -m tools.envtable` prints it; `--write` updates docs/configuration.md between the markers
(`make env-table`).
"""

import importlib
import sys
from pathlib import Path

from llmsuite_common.settings import ServiceSettings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "guardrails", "retrieval", "generation")
BEGIN, END = "<!-- env-table:begin -->", "<!-- env-table:end -->"
# The document that holds the table.
TARGET = ROOT / "docs" / "configuration.md"


def settings_class(service: str) -> type[BaseSettings]:
    module = importlib.import_module(f"{service}_service.settings")
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, ServiceSettings) and obj is not ServiceSettings
    ]
    if len(classes) != 1:
        raise RuntimeError(f"{service}_service.settings must define exactly one settings class")
    return classes[0]


def _default(field) -> str:  # type: ignore[no-untyped-def]
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if hasattr(value, "get_secret_value"):
        return "(secret)" if value.get_secret_value() else '""'
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return '""' if value == "" else str(value)


def rows() -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    for name, field in ServiceSettings.model_fields.items():
        if name in ("otel_service_name", "port"):
            continue
        out.append((name.upper(), "all", _default(field), field.description or ""))
    for service in SERVICES:
        cls = settings_class(service)
        for name in ("otel_service_name", "port"):
            out.append(
                (
                    name.upper(),
                    service,
                    _default(cls.model_fields[name]),
                    ServiceSettings.model_fields[name].description or "",
                )
            )
        for name, field in cls.model_fields.items():
            if name not in ServiceSettings.model_fields:
                out.append((name.upper(), service, _default(field), field.description or ""))
    return out


def table() -> str:
    lines = ["| variable | service | default | meaning |", "|---|---|---|---|"]
    for var, service, default, desc in rows():
        shown = default.replace("|", "\\|").replace("\n", "\\n")
        meaning = desc.replace("|", "\\|")
        lines.append(f"| `{var}` | {service} | `{shown}` | {meaning} |")
    return "\n".join(lines)


def render(document: str) -> str:
    """`document` with the text between the markers replaced by the current table."""
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> None:
    if "--write" in sys.argv:
        TARGET.write_text(render(TARGET.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
