from gateway_service.pipeline.prompt import (
    CONTEXT_INSTRUCTION,
    NO_CONTEXT,
    context_prompt,
    last_user_text,
    with_context,
)
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2

CHUNKS = [
    retrieval_pb2.Chunk(chunk_id="a#0", source_id="a.md", text="pgvector stores embeddings.", score=0.9),
    retrieval_pb2.Chunk(chunk_id="b#3", source_id="b.md", text="HNSW is an index.", score=0.7),
]


def test_chunks_are_numbered_with_their_source():
    prompt = context_prompt(CHUNKS)
    assert prompt.startswith(CONTEXT_INSTRUCTION)
    assert "[1] (source: a.md) pgvector stores embeddings." in prompt
    assert "[2] (source: b.md) HNSW is an index." in prompt
    assert prompt.index("[1]") < prompt.index("[2]")


def test_no_chunks_says_so():
    assert context_prompt([]).endswith(NO_CONTEXT)


def test_context_is_prepended_as_a_system_message():
    messages = [
        common_pb2.ChatMessage(role="system", content="Be brief."),
        common_pb2.ChatMessage(role="user", content="What stores embeddings?"),
    ]
    out = with_context(messages, CHUNKS)
    assert [m.role for m in out] == ["system", "system", "user"]
    assert out[0].content == context_prompt(CHUNKS)
    assert out[1:] == messages


def test_query_is_the_last_non_empty_user_message():
    messages = [
        common_pb2.ChatMessage(role="user", content="first"),
        common_pb2.ChatMessage(role="assistant", content="answer"),
        common_pb2.ChatMessage(role="user", content="second"),
        common_pb2.ChatMessage(role="user", content="  "),
    ]
    assert last_user_text(messages) == "second"
    assert last_user_text([common_pb2.ChatMessage(role="system", content="x")]) is None
