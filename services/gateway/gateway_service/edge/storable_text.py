"""Text PostgreSQL can store: no NUL character, no lone UTF-16 surrogate.

PostgreSQL refuses both in `text` and `jsonb` (a NUL byte is not allowed in a text value; a lone
surrogate is not UTF-8 at all). A request-log row carries text the gateway did not write - an
answer from a model, a summary of it - so the writer replaces them before the row is sent, rather
than let one row fail the batch it is in.
"""

import re
from typing import Any

from psycopg.types.json import Jsonb

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


def _clean(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        cleaned = storable(value)
        return cleaned, cleaned is not value
    if isinstance(value, Jsonb):
        obj, changed = _clean(value.obj)
        return (Jsonb(obj) if changed else value), changed
    if isinstance(value, dict):
        items = [(_clean(k), _clean(v)) for k, v in value.items()]
        if any(kc or vc for (_, kc), (_, vc) in items):
            return {k: v for (k, _), (v, _) in items}, True
        return value, False
    if isinstance(value, (list, tuple)):
        parts = [_clean(v) for v in value]
        if any(c for _, c in parts):
            return type(value)(v for v, _ in parts), True
        return value, False
    return value, False


def _needs_cleaning(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, Jsonb):
        return _needs_cleaning(value.obj)
    if isinstance(value, dict):
        return any(_needs_cleaning(k) or _needs_cleaning(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_needs_cleaning(v) for v in value)
    return False


def storable_row(row: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
    """The row with every string made storable, and whether anything had to be replaced."""
    # Almost every row is clean: find that out without building anything.
    if not _needs_cleaning(row):
        return row, False
    cleaned, _ = _clean(row)
    return cleaned, True
