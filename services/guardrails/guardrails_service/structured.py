"""Structured output: repair almost-valid JSON (fences, trailing commas, quotes) with json-repair,
then validate against the request's JSON Schema with jsonschema.

The schema is the caller's and is treated as hostile (schema_checks): bounded in size and depth,
`$ref` followed only inside the schema, nothing ever fetched. Compiling and validating are CPU
work, so the servicer runs `check` in a worker thread (`check_off_loop`).
"""

import asyncio
import functools
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import json_repair
from jsonschema.protocols import Validator
from referencing.exceptions import Unresolvable

from .schema_checks import SLOW_PATTERN, InvalidSchema, SchemaLimits, compile_schema
from .schema_patterns import PatternTimeout, time_limit

__all__ = [
    "InvalidSchema",
    "SchemaLimits",
    "StructuredResult",
    "check",
    "check_off_loop",
    "load_schema",
    "validate",
]

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
MAX_ERRORS = 5
# Few threads of its own: an expensive schema occupies these, not the loop's default executor.
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="json-schema")


@dataclass(frozen=True)
class StructuredResult:
    valid: bool
    text: str
    repaired: bool
    errors: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def load_schema(schema_text: str, limits: SchemaLimits = SchemaLimits()) -> Validator:
    """The compiled validator for `schema_text`; re-asks send the same schema again, hence the cache."""
    if not schema_text.strip():
        return compile_schema({"type": "object"})
    return compile_schema(schema_text, limits)


def validate(text: str, validator: Validator) -> StructuredResult:
    repaired = False
    try:
        try:
            doc = json.loads(text)
            out = text
        except json.JSONDecodeError:
            fenced = _FENCE.match(text)
            candidate = fenced.group(1) if fenced else text
            doc = json_repair.loads(candidate)
            # json-repair returns "" for text with no JSON in it at all: that is not a repair.
            if doc == "" and candidate.strip() not in ('""', "''"):
                return StructuredResult(False, text, False, ["the response is not JSON"])
            out = json.dumps(doc, ensure_ascii=False)
            repaired = True
    except RecursionError:
        # The answer, not the schema, is at fault: it is invalid, the call is not.
        return StructuredResult(False, text, False, ["the response is nested too deeply"])
    try:
        with time_limit():
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    except PatternTimeout:
        # The caller's pattern, not the answer, is at fault: the next answer would fare no better.
        raise InvalidSchema(SLOW_PATTERN) from None
    except Unresolvable:
        # Only local references pass compile_schema; one that still cannot be resolved points
        # at a part of the schema that is not there (or off to a document it may not fetch).
        raise InvalidSchema("the JSON schema has a $ref that does not resolve within the schema") from None
    except RecursionError:
        raise InvalidSchema("the JSON schema refers to itself without end ($ref cycle)") from None
    messages = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"[:300] for e in errors[:MAX_ERRORS]
    ]
    return StructuredResult(not messages, out, repaired, messages)


def check(schema_text: str, text: str, limits: SchemaLimits = SchemaLimits()) -> StructuredResult:
    """Compiles (or reuses) the schema and validates `text`; raises InvalidSchema. Blocking."""
    return validate(text, load_schema(schema_text, limits))


async def compile_off_loop(schema_text: str, limits: SchemaLimits = SchemaLimits()) -> None:
    """Compiles (and keeps) the schema, or raises InvalidSchema; nothing is validated."""
    await asyncio.get_running_loop().run_in_executor(_EXECUTOR, load_schema, schema_text, limits)


async def check_off_loop(
    schema_text: str, text: str, limits: SchemaLimits = SchemaLimits()
) -> StructuredResult:
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, check, schema_text, text, limits)
