"""Hypothesis strategies for any protobuf message, built from its descriptor.

Values lean to the edges: the extremes of each integer type, NaN and infinities, empty, control
(NUL included) and very long strings, unknown enum numbers, empty and long repeated fields, maps,
and every member of a oneof. `hints` adds plausible values by field name (a model that exists, a
collection that exists) so that some requests get past the first check into the handler; a
hint that is a strategy replaces the generated values of its field.
"""

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

# Deeper than any message of the suite's protos nests; a recursive type would stop here.
MAX_DEPTH = 5
# A long repeated field repeats one generated element this many times.
MANY = (64, 1024, 4096)
# Very long strings: one character repeated, so generating them costs nothing.
LONG = (1 << 10, 1 << 16, 1 << 20)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings that have broken parsers, paths, URLs, templates and terminals elsewhere.
NASTY_STRINGS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00" * 64,
    "\r\n\r\n",
    "\x1b[31m",
    "\u202e\u200b\ufeff",
    "\U0001f600" * 16,
    "../../../../etc/passwd",
    "file:///etc/passwd",
    "file://",
    "s3://",
    "s3://bucket/key.pdf",
    "http://127.0.0.1:1/",
    "%00%ff%2e%2e",
    "' OR 1=1 --",
    "{{7*7}}${7*7}",
    "{}",
    "[]",
    "null",
    '{"type": "object", "properties": {"a": {"$ref": "#"}}}',
    '{"$ref": "http://127.0.0.1:1/schema.json"}',
    "<script>" * 16,
)
# Long in structure rather than in bytes: deep nesting for any JSON or HTML parser behind a field.
DEEP_STRINGS = ("[" * 10_000, '{"a":' * 5_000 + "1" + "}" * 5_000, "<div>" * 10_000)

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=64)


def _long_string() -> st.SearchStrategy[str]:
    characters = st.sampled_from(["a", "\x00", " ", "\u00e9", "\U0001f600", "<"])
    return st.builds(lambda ch, n: ch * n, characters, st.sampled_from(LONG))


def strings(*, big: bool = True) -> st.SearchStrategy[str]:
    small = st.one_of(st.sampled_from(NASTY_STRINGS), _TEXT)
    return st.one_of(small, _long_string(), st.sampled_from(DEEP_STRINGS)) if big else small


def usually(
    values: Sequence[Any], otherwise: st.SearchStrategy[Any], *, share: int = 3
) -> st.SearchStrategy[Any]:
    """One of `values` `share` times in `share + 1`, else a value of `otherwise`."""
    # Hypothesis favours the simplest draw (0): that is the hinted value, not the odd one out.
    return st.integers(0, share).flatmap(lambda i: st.sampled_from(values) if i < share else otherwise)


def _bytes(*, big: bool = True) -> st.SearchStrategy[bytes]:
    small = st.one_of(
        st.binary(max_size=256),
        st.sampled_from(
            [
                b"",
                b"%PDF-1.7\n",
                b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer<<>>\n%%EOF",
                b"<html>" * 1000,
            ]
        ),
    )
    if not big:
        return small
    return st.one_of(
        small, st.builds(lambda b, n: b * n, st.sampled_from([b"\x00", b"\xff", b"<"]), st.sampled_from(LONG))
    )


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, 0, 1, -1 if lo < 0 else 0, lo + 1, hi - 1})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


Hints = Mapping[str, Sequence[Any] | st.SearchStrategy[Any]]


def _scalar(field: FieldDescriptor, hints: Hints, big: bool) -> st.SearchStrategy[Any]:
    hint = hints.get(field.name, ())
    if isinstance(hint, st.SearchStrategy):
        return hint  # the caller's own strategy for this field
    hinted = tuple(hint)
    t = field.type
    if t in _INT_RANGES:
        base = _integers(*_INT_RANGES[t])
    elif t == FieldDescriptor.TYPE_FLOAT:
        base = st.floats(width=32)
    elif t == FieldDescriptor.TYPE_DOUBLE:
        base = st.floats()
    elif t == FieldDescriptor.TYPE_BOOL:
        base = st.booleans()
    elif t == FieldDescriptor.TYPE_STRING:
        base = strings(big=big)
    elif t == FieldDescriptor.TYPE_BYTES:
        base = _bytes(big=big)
    elif t == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: a number the enum does not name still travels.
        known = [v.number for v in field.enum_type.values]
        base = st.one_of(st.sampled_from(known), _integers(-(2**31), 2**31 - 1))
    else:  # pragma: no cover - every scalar type is listed above
        raise TypeError(f"unhandled field type {t} of {field.full_name}")
    # Half the values from the hints, when there are any: enough of them get past the first check.
    return st.one_of(st.sampled_from(hinted), base) if hinted else base


def messages(
    descriptor: Descriptor,
    hints: Hints | None = None,
    *,
    always: Collection[str] = (),
    depth: int = 0,
    big: bool = True,
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type; each field is set or left out, a oneof gets one member.

    Fields named in `always` are always set (the request context: without it nearly every
    request stops at the first check). `big` allows very long strings and long repeated fields;
    the elements a long repeated field repeats are small, so one message stays within a few
    megabytes.
    """
    hints = hints or {}
    cls = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        return st.just(cls())

    def element_of(field: FieldDescriptor, big: bool) -> st.SearchStrategy[Any]:
        if field.message_type is not None:
            return messages(field.message_type, hints, always=always, depth=depth + 1, big=big)
        return _scalar(field, hints, big)

    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            few = st.dictionaries(_scalar(key, hints, False), element_of(value, big), max_size=4)
            if big and key.type == FieldDescriptor.TYPE_STRING:
                many = st.builds(
                    lambda n, v: {f"k{i}": v for i in range(n)},
                    st.sampled_from(MANY),
                    element_of(value, False),
                )
                few = st.one_of(few, many)
            fields[field.name] = few
        elif _is_repeated(field):
            few = st.lists(element_of(field, big), max_size=4)
            if big:
                many = st.builds(lambda e, n: [e] * n, element_of(field, False), st.sampled_from(MANY))
                few = st.one_of(few, many)
            fields[field.name] = few
        else:
            fields[field.name] = element_of(field, big)
    oneofs = {o.name: [f.name for f in o.fields] for o in descriptor.oneofs if not _synthetic(o)}
    in_oneof = {name for members in oneofs.values() for name in members}

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        values: dict[str, Any] = {}
        for name, strategy in fields.items():
            if name not in in_oneof and (name in always or draw(st.booleans())):
                values[name] = draw(strategy)
        for members in oneofs.values():
            chosen = draw(st.sampled_from([None, *members]))
            if chosen is not None:
                values[chosen] = draw(fields[chosen])
        return cls(**values)

    return build()


def _is_repeated(field: FieldDescriptor) -> bool:
    # `is_repeated` in newer protobuf releases, `label` in older ones.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _synthetic(oneof: Any) -> bool:
    """The oneof protoc makes for a proto3 `optional` field: not a real choice between fields."""
    only = oneof.fields[0] if len(oneof.fields) == 1 else None
    return only is not None and only.has_presence and oneof.name == "_" + only.name


def mutated(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Serialized messages with bytes flipped, cut short or appended: mostly still parseable."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(data))
        for _ in range(draw(st.integers(0, 4))):
            action = draw(st.sampled_from(["flip", "cut", "append", "insert"]))
            if action == "flip" and raw:
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
            elif action == "cut" and raw:
                del raw[draw(st.integers(0, len(raw) - 1)) :]
            elif action == "append":
                raw += draw(st.binary(max_size=16))
            elif action == "insert":
                at = draw(st.integers(0, len(raw)))
                raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        return bytes(raw)

    return mutate()
