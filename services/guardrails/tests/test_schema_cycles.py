"""A `$ref` cycle that would recurse without end on any instance is found by walking the schema's
structure, before anything is evaluated; recursion that moves into the instance (a linked list, a
tree) is a valid schema, and so is a `const` that only looks like a reference."""

import pytest
from guardrails_service import schema_checks
from guardrails_service.schema_checks import InvalidSchema, compile_schema

CYCLES = {
    "itself": {"$ref": "#"},
    "two defs": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "through allOf and not": {"allOf": [{"not": {"$ref": "#"}}]},
    "under properties, through anyOf": {"properties": {"a": {"anyOf": [{"$ref": "#/properties/a"}]}}},
    "through an anchor": {
        "$defs": {"A": {"$anchor": "a", "oneOf": [{"$ref": "#a"}]}},
        "properties": {"p": {"$ref": "#a"}},
    },
    # Inside a subschema with an `$id`, "#" is that subschema.
    "through an $id": {
        "$defs": {"n": {"$id": "https://schemas.example/n", "allOf": [{"$ref": "#"}]}},
        "$ref": "#/$defs/n",
    },
    "through if and then": {"if": {"then": {"$ref": "#"}}},
    "through dependentSchemas": {"dependentSchemas": {"x": {"$ref": "#"}}},
}
# Each with an instance it accepts and one it refuses.
FINE = {
    "a linked list": {
        "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
        "$ref": "#/$defs/n",
    },
    "a tree": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}},
    "a const that looks like a ref": {"properties": {"c": {"const": {"$ref": "#/properties/c/const"}}}},
    "a property named not": {"type": "object", "properties": {"not": {"$ref": "#"}}},  # 4 is no object
    "a list under an $id": {
        "$defs": {
            "n": {"$id": "https://schemas.example/n", "type": "object", "properties": {"next": {"$ref": "#"}}}
        },
        "$ref": "#/$defs/n",
    },
}


@pytest.mark.parametrize("schema", CYCLES.values(), ids=CYCLES.keys())
def test_a_cycle_is_refused_before_anything_is_evaluated(schema, monkeypatch):
    # Without the probe instances nothing would recurse: only the walk can find the cycle.
    monkeypatch.setattr(schema_checks, "_PROBES", ())
    with pytest.raises(InvalidSchema, match=r"\(\$ref cycle\)"):
        compile_schema(schema)


@pytest.mark.parametrize("schema", FINE.values(), ids=FINE.keys())
def test_recursion_into_the_instance_is_a_valid_schema(schema):
    validator = compile_schema(schema)
    assert validator.is_valid(
        {"next": {"next": {}}, "kids": [{"kids": []}], "c": {"$ref": "#/properties/c/const"}}
    )
    assert not validator.is_valid({"next": {"next": 1}, "kids": [{"kids": 2}], "c": 3, "not": 4})


def test_a_long_chain_of_refs_is_walked_without_recursion():
    chain = {"$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(5000)}, "$ref": "#/$defs/d0"}
    chain["$defs"]["d5000"] = {"$ref": "#/$defs/d0"}
    with pytest.raises(InvalidSchema, match=r"\(\$ref cycle\)"):
        compile_schema(chain)
