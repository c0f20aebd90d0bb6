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
