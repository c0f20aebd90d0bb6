"""A caller's JSON Schema made safe to compile: bounded size and depth, local references only.

jsonschema's default registry fetches any `$ref` it cannot resolve locally (urlopen, so http://,
https:// and file:// alike): a caller could make guardrails read internal URLs or local files
(SSRF), and block the thread that validates while it waits. Here every `$ref` / `$dynamicRef`
must be a fragment of the schema itself (`#`, `#/$defs/x`, `#anchor`; the rule the gateway
applies too, llmsuite_common.rules.schema_outline), and the validator's registry refuses to
retrieve anything, so nothing is fetched even through a `$id` base.
"""

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from llmsuite_common.rules.schema_outline import MAX_SCHEMA_DEPTH, InvalidSchema, check_schema_outline
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

# Instances every schema must be able to judge: a `$ref` cycle with nothing in between recurses
# on each of them, so it is found when the schema is compiled rather than on every answer.
_PROBES: tuple[Any, ...] = (None, {}, [], "", 0)


@dataclass(frozen=True)
class SchemaLimits:
    max_bytes: int = 64 * 1024
    max_depth: int = MAX_SCHEMA_DEPTH


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class its stubs miss


# Only the JSON Schema specifications themselves (which jsonschema adds) and the schema at hand.
_NO_RETRIEVAL: Registry = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def compile_schema(schema: str | dict[str, Any], limits: SchemaLimits = SchemaLimits()) -> Validator:
    """A Draft 2020-12 validator for `schema`, or InvalidSchema saying what is wrong. Blocking."""
    if isinstance(schema, str):
        schema = _parse(schema, limits)
    if not isinstance(schema, dict):
        raise InvalidSchema("the JSON schema must be an object")
    check_schema_outline(schema, limits.max_depth)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        raise InvalidSchema(f"invalid JSON schema: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise InvalidSchema("the JSON schema is nested too deeply") from None
    validator = Draft202012Validator(schema, registry=_NO_RETRIEVAL)
    for probe in _PROBES:
        try:
            for _ in validator.iter_errors(probe):
                pass
        except Unresolvable:
            raise InvalidSchema(
                "the JSON schema has a $ref that does not resolve within the schema"
            ) from None
        except RecursionError:
            raise InvalidSchema("the JSON schema refers to itself without end ($ref cycle)") from None
    return validator


def _parse(text: str, limits: SchemaLimits) -> Any:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise InvalidSchema(f"the JSON schema is {size} bytes; at most {limits.max_bytes} are accepted")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidSchema(f"invalid JSON schema: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise InvalidSchema(f"the JSON schema is nested more than {limits.max_depth} levels deep") from None
