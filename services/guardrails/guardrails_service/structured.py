"""Structured output: repair almost-valid JSON (fences, trailing commas, quotes) with json-repair,
then validate against the request's JSON Schema with jsonschema."""

import json
import re
from dataclasses import dataclass, field
from typing import Any

import json_repair
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
MAX_ERRORS = 5


class InvalidSchema(ValueError):
    pass


@dataclass(frozen=True)
class StructuredResult:
    valid: bool
    text: str
    repaired: bool
    errors: list[str] = field(default_factory=list)


def load_schema(schema_text: str) -> dict[str, Any]:
    if not schema_text.strip():
        return {"type": "object"}
    try:
        schema = json.loads(schema_text)
        if not isinstance(schema, dict):
            raise InvalidSchema("the JSON schema must be an object")
        Draft202012Validator.check_schema(schema)
    except (json.JSONDecodeError, SchemaError) as err:
        raise InvalidSchema(f"invalid JSON schema: {str(err).splitlines()[0][:200]}") from None
    return schema


def validate(text: str, schema: dict[str, Any]) -> StructuredResult:
    repaired = False
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
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    messages = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"[:300] for e in errors[:MAX_ERRORS]]
    return StructuredResult(not messages, out, repaired, messages)
