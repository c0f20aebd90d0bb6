"""Custom resources checked against their CRD's schema, from files committed under crds/.

kubernetes-validate ships only the built-in API. For a custom kind whose CRD schema is in
crds/<group>_<version>_<kind>.json, validate() checks a rendered object against that
openAPIV3Schema, strictly: an object schema with `properties` gets `additionalProperties: false`
(unless it preserves unknown fields), as the API server's strict field validation refuses
unknown fields. CEL rules (x-kubernetes-validations) are not evaluated. Only json and
jsonschema are imported, so tests/k8s can use this module from the services' venv too.
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

CRD_DIR = Path(__file__).resolve().parent / "crds"


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every committed CRD schema."""
    found = {}
    for path in sorted(CRD_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        schema = _strict(doc["schema"])
        # Every object has apiVersion, kind and metadata; the CRD schema leaves metadata open.
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        found[(doc["apiVersion"], doc["kind"])] = schema
    return found


def known(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in schemas()


def validate(obj: dict[str, Any]) -> str | None:
    """None when valid, else the first error; KeyError for a kind with no committed schema."""
    schema = schemas()[(obj.get("apiVersion"), obj.get("kind"))]
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(obj))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"
