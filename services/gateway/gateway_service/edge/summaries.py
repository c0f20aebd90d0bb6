"""Compact summaries of a conversation for the request log.

The default summary is extractive: the opening sentence(s) of the last user turn and the first
sentence of the answer, bounded in length. With GATEWAY_SUMMARY_MODEL set, a small model served by
the generation service writes it instead; that runs in the log writer, under its own deadline, and
falls back to the extractive summary whenever the model is slow or fails. Either way the text is
redacted before it is stored.
"""

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite_common.call_auth import acting_as
from llmsuite_common.redaction import redact
from llmsuite_common.service_tokens import Caller

log = logging.getLogger(__name__)

MAX_SUMMARY_CHARS = 280
# Of the question and of the answer, at most this much is kept while a row waits to be written.
MAX_SOURCE_CHARS = 2000
# The key id the summarizer's service tokens name (it acts for no API key).
SUMMARIZER_KEY_ID = "gateway-summarizer"
_QUESTION_CHARS = 160
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_SPACES = re.compile(r"\s+")

_INSTRUCTION = (
    "Summarize this exchange in one short sentence of at most 30 words: what the user asked and what "
    "the answer said. Do not quote names, e-mail addresses, keys or numbers."
)


def _sentences(text: str) -> list[str]:
    return [s for s in (_SPACES.sub(" ", part).strip() for part in _SENTENCE_END.split(text)) if s]


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Prefer ending on a word boundary when one is reasonably close.
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _opening(text: str, limit: int) -> str:
    """Leading sentences of `text` that fit in `limit` (at least the first, clipped)."""
    parts = _sentences(text)
    if not parts:
        return ""
    out = parts[0]
    for sentence in parts[1:]:
        if len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}"
    return _clip(out, limit)


def extractive_summary(question: str, answer: str, *, limit: int = MAX_SUMMARY_CHARS) -> str:
    """`Q: <opening of the question> A: <first sentence of the answer>`, at most `limit` characters."""
    asked = _opening(question, min(_QUESTION_CHARS, limit))
    first = _sentences(answer)
    parts = []
    if asked:
        parts.append(f"Q: {asked}")
    if first:
        room = limit - len(" ".join(parts)) - 4
        if room > 8:
            parts.append(f"A: {_clip(first[0], room)}")
    return _clip(" ".join(parts), limit)


def last_user_turn(messages: Sequence[tuple[str, str]]) -> str:
    for role, content in reversed(messages):
        if role == "user" and content.strip():
            return content
    return ""


def clean_summary(text: str, *, limit: int = MAX_SUMMARY_CHARS) -> str:
    """Single-line, bounded and redacted (no e-mails, keys or tokens) — what every stored summary is."""
    return _clip(_SPACES.sub(" ", redact(text)).strip(), limit)


class ModelSummarizer:
    """Asks a small model through the generation service; None when it fails or is late."""

    def __init__(self, clients: Any, model: str, *, timeout_seconds: float, max_tokens: int = 64) -> None:
        # `clients.generation` is the GenerationService stub, there once the clients are open.
        self._clients = clients
        self._model = model
        self.timeout_seconds = timeout_seconds
        self._max_tokens = max_tokens

    async def summarize(self, org_id: str, request_id: str, question: str, answer: str) -> str | None:
        request = generation_pb2.GenerateRequest(
            context=common_pb2.RequestContext(request_id=request_id, org_id=org_id),
            model=self._model,
            messages=[
                common_pb2.ChatMessage(role="system", content=_INSTRUCTION),
                common_pb2.ChatMessage(
                    role="user",
                    # Redacted before it leaves the gateway too: the summarizer never sees a secret.
                    content=redact(
                        f"User: {question[:MAX_SOURCE_CHARS]}\n\nAnswer: {answer[:MAX_SOURCE_CHARS]}"
                    ),
                ),
            ],
            max_tokens=self._max_tokens,
            temperature=0.0,
        )
        try:
            async with asyncio.timeout(self.timeout_seconds):
                # The summary is used once complete: the whole answer in one reply.
                # Outside any request: the call is made for the organization the row belongs to.
                with acting_as(Caller(org_id=org_id, key_id=SUMMARIZER_KEY_ID, role="service")):
                    call = self._clients.generation.Complete(request, timeout=self.timeout_seconds)
                reply = await call
        except (TimeoutError, grpc.aio.AioRpcError) as err:
            log.info(
                "summary model unavailable; using the extractive summary", extra={"error": type(err).__name__}
            )
            return None
        text = reply.delta.content.strip()
        return text or None
