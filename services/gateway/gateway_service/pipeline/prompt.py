"""The system message that puts retrieved chunks in front of the model."""

from collections.abc import Sequence
from typing import Protocol

from llmsuite.common.v1 import common_pb2

CONTEXT_INSTRUCTION = (
    "Answer the user's question using only the numbered context below, and cite the passages "
    "you use as [n]. If the context does not contain the answer, say that you do not know."
)
NO_CONTEXT = "(no passages matched the question)"


class ContextChunk(Protocol):
    source_id: str
    text: str


def context_prompt(chunks: Sequence[ContextChunk]) -> str:
    lines = [f"[{n}] (source: {chunk.source_id}) {chunk.text}" for n, chunk in enumerate(chunks, 1)]
    return CONTEXT_INSTRUCTION + "\n\n" + ("\n\n".join(lines) if lines else NO_CONTEXT)


def with_context(
    messages: Sequence[common_pb2.ChatMessage], chunks: Sequence[ContextChunk]
) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role="system", content=context_prompt(chunks)), *messages]


def last_user_text(messages: Sequence[common_pb2.ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    return None
