"""A caller's `pattern` and `patternProperties`, evaluated in bounded time.

jsonschema matches them with Python's `re` (`jsonschema._keywords` and `jsonschema._utils` call
`re.search`), whose backtracking lets a pattern such as `^(a+)+$` take time exponential in the
length of the text: a 40-character answer would hold a validation thread for hours, and the few
validation threads serve every tenant. install() gives those two modules an `re` whose `search`
runs on the `regex` module under the deadline of the validation in progress (time_limit()); a
search past it raises PatternTimeout. A schema whose patterns `regex` cannot compile is refused
when it is compiled (check_patterns(), given the schema's subschemas).
"""

import functools
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import jsonschema._keywords
import jsonschema._utils
import regex
from llmsuite_common.rules.schema_outline import InvalidSchema

# All the pattern searches of one validation together (a schema's probes, or one answer).
PATTERN_SECONDS = 0.5

_local = threading.local()


class PatternTimeout(Exception):
    """A pattern of the schema ran past the validation's deadline."""


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


class _BoundedRe:
    """Stands in for the `re` module inside jsonschema, which only calls `search` there."""

    def search(self, pattern: str, string: str, flags: int = 0) -> Any:
        deadline: float | None = getattr(_local, "deadline", None)
        if deadline is None:
            return _compiled(pattern).search(string)
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise PatternTimeout
        try:
            return _compiled(pattern).search(string, timeout=timeout)
        except TimeoutError:
            raise PatternTimeout from None

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


def install() -> None:
    """Idempotent; done when schema_checks is imported, before any schema is compiled."""
    bounded = _BoundedRe()
    for module in (jsonschema._keywords, jsonschema._utils):
        module.re = bounded  # type: ignore[attr-defined]


@contextmanager
def time_limit(seconds: float = PATTERN_SECONDS) -> Iterator[None]:
    """Pattern searches in this thread, within the block, share `seconds` of wall time."""
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = None


def check_patterns(subschemas: Iterable[dict[str, Any]]) -> None:
    """Every `pattern` and `patternProperties` key of these subschemas compiles with `regex`."""
    for node in subschemas:
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += list(node["patternProperties"])
        for pattern in patterns:
            try:
                _compiled(pattern)
            except regex.error as err:
                raise InvalidSchema(f"invalid JSON schema: pattern {pattern[:80]!r}: {err}") from None
