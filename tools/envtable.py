"""The README's environment-variable table, generated from the settings classes.

`python -m tools.envtable` prints it; `--write` updates README.md between the markers.
"""

import importlib
import sys
from pathlib import Path

from llmsuite_common.settings import ServiceSettings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "guardrails", "retrieval", "generation")
BEGIN, END = "<!-- env-table:begin -->", "<!-- env-table:end -->"


def settings_class(service: str) -> type[BaseSettings]:
    for name in (str(ROOT / "services" / service),):
        if name not in sys.path:
            sys.path.insert(0, name)
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


def render(readme: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> None:
    path = ROOT / "README.md"
    if "--write" in sys.argv:
        path.write_text(render(path.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
