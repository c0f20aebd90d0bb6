import pytest
from llmsuite_common.errors import InvalidArgument
from retrieval_service import validation
from retrieval_service.validation import DocumentInput, Limits

LIMITS = Limits(
    max_documents=3,
    max_document_bytes=100,
    max_metadata_entries=2,
    max_metadata_value_bytes=10,
    max_query_bytes=50,
    default_k=4,
    max_k=10,
)


def param_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as info:
        call()
    return info.value.param


def test_valid_documents_come_back_as_plain_values():
    docs = validation.documents([("a", "text", {"lang": "en"}), ("b", "more", {})], LIMITS)
    assert docs == [DocumentInput("a", "text", {"lang": "en"}), DocumentInput("b", "more", {})]


def test_k_zero_is_the_default_and_k_is_capped():
    assert validation.k(0, LIMITS) == 4
    assert validation.k(10, LIMITS) == 10
    assert param_of(lambda: validation.k(11, LIMITS)) == "k"


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "x" * 64, "0"])
def test_collection_names_that_pass(name: str):
    assert validation.collection(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "é", "a\n", "a;DROP"])
def test_collection_names_that_fail(name: str):
    assert param_of(lambda: validation.collection(name)) == "collection"


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([(str(i), "t", {}) for i in range(4)], "documents"),
        ([("a\x00", "t", {})], "documents[0].id"),
        ([("x" * 257, "t", {})], "documents[0].id"),
        ([("a", "é" * 51, {})], "documents[0].text"),  # 51 characters, 102 bytes
        ([("a", "t", {"a": "1", "b": "2", "c": "3"})], "documents[0].metadata"),
        ([("a", "t", {"k": "x" * 11})], "documents[0].metadata"),
        ([("a", "t", {"": "v"})], "documents[0].metadata"),
        ([("a", "t", {"k" * 65: "v"})], "documents[0].metadata"),
    ],
)
def test_document_limits(items, param: str):  # type: ignore[no-untyped-def]
    assert param_of(lambda: validation.documents(items, LIMITS)) == param


def test_tenant_must_be_present_and_clean():
    assert validation.tenant("org_1") == "org_1"
    assert param_of(lambda: validation.tenant("  ")) == "context.org_id"
    assert param_of(lambda: validation.tenant("o\x00")) == "context.org_id"


def test_messages_name_the_field_not_its_value():
    with pytest.raises(InvalidArgument) as info:
        validation.query("canary-secret " * 10, LIMITS)
    assert "canary" not in info.value.message
