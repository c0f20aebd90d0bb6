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
from referencing.jsonschema import DRAFT202012

from .schema_patterns import PatternTimeout, check_patterns, install, time_limit

# Every validator compiled here matches patterns in bounded time (schema_patterns).
install()

# referencing's Resolver, which the package does not export.
Resolver = Any
# Instances every schema must be able to judge: a reference that does not resolve fails on them
# when the schema is compiled rather than on every answer. (A `$ref` cycle is found before, by
# _in_place_cycle, and only a cycle it cannot see would recurse here.)
_PROBES: tuple[Any, ...] = (None, {}, [], "", 0)
# Keywords whose subschemas apply to the very instance their schema applies to. A cycle through
# them alone (`{"$ref": "#"}`, a -> b -> a) recurses without end on any instance; a cycle through
# properties, items and the like moves into the instance, which is finite, so it ends.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_MANY = ("allOf", "anyOf", "oneOf")
_REFS = ("$ref", "$dynamicRef")
_REF_CYCLE = "the JSON schema refers to itself without end ($ref cycle)"
_UNRESOLVED = "the JSON schema has a $ref that does not resolve within the schema"
SLOW_PATTERN = (
    "a pattern of the JSON schema took too long to evaluate (it backtracks without bound); "
    "simplify its nested repetitions"
)


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
    # One walk of the schema's subschemas serves both structural checks.
    subschemas = _subschemas(schema)
    if _in_place_cycle(subschemas):
        raise InvalidSchema(_REF_CYCLE)
    check_patterns(node for node, _ in subschemas)
    validator = Draft202012Validator(schema, registry=_NO_RETRIEVAL)
    for probe in _PROBES:
        try:
            with time_limit():
                for _ in validator.iter_errors(probe):
                    pass
        except Unresolvable:
            raise InvalidSchema(_UNRESOLVED) from None
        except RecursionError:
            raise InvalidSchema(_REF_CYCLE) from None
        except PatternTimeout:
            raise InvalidSchema(SLOW_PATTERN) from None
    return validator


def _in_place(node: dict[str, Any], resolver: Resolver) -> list[tuple[Any, Resolver]]:
    """The subschemas `node` applies to its own instance, each with the resolver inside it
    (`resolver` is the one inside `node`)."""
    out: list[tuple[Any, Resolver]] = []
    for keyword in _REFS:
        ref = node.get(keyword)
        if isinstance(ref, str):
            try:
                resolved = resolver.lookup(ref)
            # A pointer into a value that is no schema (`#/type/x`, `#/required/x`) fails inside
            # referencing with whatever indexing that value raised.
            except (Unresolvable, LookupError, TypeError, ValueError, AttributeError):
                raise InvalidSchema(_UNRESOLVED) from None
            if not isinstance(resolved.contents, (dict, bool)):
                # `#/required`, `#/properties/x/type`: jsonschema would fail on it with a TypeError.
                raise InvalidSchema(f"the JSON schema has a {keyword} to a value that is not a schema")
            # A lookup's resolver is already the one inside its target.
            out.append((resolved.contents, resolved.resolver))
    subs = [node[k] for k in _IN_PLACE_ONE if k in node]
    for keyword in _IN_PLACE_MANY:
        if isinstance(node.get(keyword), list):
            subs += node[keyword]
    if isinstance(node.get("dependentSchemas"), dict):
        subs += node["dependentSchemas"].values()
    return out + [(sub, _scoped(sub, resolver)) for sub in subs]


def _in_place_cycle(subschemas: list[tuple[dict[str, Any], Resolver]]) -> bool:
    """Whether following in-place subschemas and references from some subschema leads back to it:
    a walk of the schema's structure, without evaluating it (and without recursion: a chain of
    thousands of `$defs` is walked with a stack of its own)."""
    state: dict[int, bool] = {}  # id of a subschema -> True while on the walk's path, False when done
    # From every subschema, not only the root: a cycle may sit under `properties`.
    for first, inside in subschemas:
        if id(first) in state:
            continue
        state[id(first)] = True
        stack = [(first, iter(_in_place(first, inside)))]
        while stack:
            node, children = stack[-1]
            for child, child_resolver in children:
                if not isinstance(child, dict):
                    continue
                seen = state.get(id(child))
                if seen is True:
                    return True
                if seen is None:
                    state[id(child)] = True
                    stack.append((child, iter(_in_place(child, child_resolver))))
                    break
            else:
                state[id(node)] = False
                stack.pop()
    return False


def _scoped(node: Any, resolver: Resolver) -> Resolver:
    """The resolver inside `node`: its own `$id`, if it has one, is the base of its refs."""
    if isinstance(node, dict) and isinstance(node.get("$id"), str):
        return resolver.in_subresource(DRAFT202012.create_resource(node))
    return resolver


def _subschemas(schema: dict[str, Any]) -> list[tuple[dict[str, Any], Resolver]]:
    """Every subschema with the resolver inside it, the root first: what Draft 2020-12 says holds
    schemas (`properties`, `items`, `$defs`...), never a `const`, `enum` or `default` value that
    only looks like one."""
    root = DRAFT202012.create_resource(schema)
    base = root.id() or ""
    resolver = _NO_RETRIEVAL.with_resource(base, root).resolver(base_uri=base)
    found: list[tuple[dict[str, Any], Resolver]] = []
    todo: list[tuple[Any, Resolver]] = [(schema, resolver)]
    while todo:
        value, outer = todo.pop()
        if isinstance(value, dict):
            inside = _scoped(value, outer) if value is not schema else outer
            found.append((value, inside))
            todo.extend((sub, inside) for sub in DRAFT202012.subresources_of(value))
    return found


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
