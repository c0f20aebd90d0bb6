import pytest
from guardrails_service.structured import InvalidSchema, load_schema, validate

SCHEMA = load_schema(
    '{"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}, "required": ["city"]}'
)


@pytest.mark.parametrize(
    ("text", "repaired"),
    [
        ('{"city": "Paris", "n": 1}', False),
        ('```json\n{"city": "Paris", "n": 1}\n```', True),  # fenced
        ('{"city": "Paris", "n": 1,}', True),  # trailing comma
        ("{'city': 'Paris', 'n': 1}", True),  # single quotes
        ('{"city": "Paris", "n": 1', True),  # truncated
        ('Sure! {"city": "Paris", "n": 1}', True),  # chatter before
    ],
)
def test_almost_valid_json_is_repaired(text, repaired):
    result = validate(text, SCHEMA)
    assert result.valid and result.repaired == repaired
    assert result.text in ('{"city": "Paris", "n": 1}',)


def test_schema_violation_after_repair_is_reported():
    result = validate('{"n": "one",}', SCHEMA)
    assert not result.valid and result.repaired
    assert result.errors == ["(root): 'city' is a required property", "n: 'one' is not of type 'integer'"]


def test_prose_is_not_json():
    result = validate("I cannot answer that.", SCHEMA)
    assert not result.valid and not result.repaired


def test_json_object_mode_accepts_any_object():
    assert validate('{"a": [1, 2]}', load_schema("")).valid
    assert not validate("[1, 2]", load_schema("")).valid


@pytest.mark.parametrize("schema", ["{not json", '{"type": "nope"}', "[1]"])
def test_bad_schemas_are_invalid_argument(schema):
    with pytest.raises(InvalidSchema):
        load_schema(schema)


# `(a|aa)+$` backtracks exponentially in `re` on a run of a's with a wrong last character.
SLOW = '{"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}, "additionalProperties": false}'


def test_patterns_match_as_before():
    schema = load_schema(
        '{"type": "object", "properties": {"id": {"type": "string", "pattern": "^[A-Z]{2}-\\\\d+$"}}}'
    )
    assert validate('{"id": "AB-12"}', schema).valid
    assert validate('{"id": "ab-12"}', schema).errors == ["id: 'ab-12' does not match '^[A-Z]{2}-\\\\d+$'"]


def test_a_pattern_that_backtracks_without_bound_is_refused_in_bounded_time():
    import time

    schema = load_schema(SLOW)
    assert validate('{"aaaa": 1}', schema).valid
    started = time.process_time()
    with pytest.raises(InvalidSchema, match="took too long"):
        validate('{"' + "a" * 60 + 'b": 1}', schema)
    # re alone would run for longer than the universe has existed; the deadline is 0.5 s of wall time.
    assert time.process_time() - started < 2.0
