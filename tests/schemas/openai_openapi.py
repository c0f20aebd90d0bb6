"""OpenAI's published OpenAPI document (vendored, see README.md) and validation against its schemas.

from tests.schemas.openai_openapi import assert_valid
assert_valid("Response", body)            # a component schema, by name
assert_valid("ResponseStreamEvent", event)
"""

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parent / "openai" / "openapi.yaml"
_URI = "urn:openai:openapi"


@functools.cache
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(SPEC.read_text(), Loader=loader)
    return document


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/<name>`."""
    if name not in spec()["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in {SPEC.name}")
    registry = Registry().with_resource(_URI, Resource(contents=spec(), specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=registry)


def errors(name: str, instance: Any) -> list[str]:
    """Every way `instance` fails the schema, deepest cause first; empty when it is valid."""
    found = []
    for error in validator(name).iter_errors(instance):
        causes = sorted(error.context or (), key=lambda e: -len(e.absolute_path))
        where = "/".join(str(p) for p in error.absolute_path)
        found.append(f"{where or '<root>'}: {error.message}")
        found += [f"  {'/'.join(str(p) for p in c.absolute_path)}: {c.message}" for c in causes[:5]]
    return found


def assert_valid(name: str, instance: Any) -> None:
    problems = errors(name, instance)
    assert not problems, f"not a valid {name}:\n" + "\n".join(problems)
