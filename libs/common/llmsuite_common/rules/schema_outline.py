"""A client's JSON Schema, checked before anything compiles or forwards it: bounded depth and
references only within the schema itself.

A `$ref` to a URL or file makes whatever resolves it fetch that (server-side request forgery, and
a blocking read): guardrails compiles schemas, and the model server behind generation resolves the
schemas of `response_format` and tool parameters. So the gateway refuses such schemas at the door
and guardrails again before compiling; both with this one rule.
"""

from typing import Any

REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
MAX_SCHEMA_DEPTH = 64


class InvalidSchema(ValueError):
    pass


def check_schema_outline(schema: Any, max_depth: int = MAX_SCHEMA_DEPTH) -> None:
    """Depth within the limit and only local references (`#`, `#/$defs/x`, `#anchor`), walked
    without recursion; raises InvalidSchema saying what is wrong."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidSchema(f"the JSON schema is nested more than {max_depth} levels deep")
        if isinstance(node, dict):
            for keyword in REF_KEYWORDS:
                ref = node.get(keyword)
                if isinstance(ref, str) and not ref.startswith("#"):
                    raise InvalidSchema(
                        f"{keyword} must point within the schema ('#/$defs/...'): remote and file "
                        "references are not followed"
                    )
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
