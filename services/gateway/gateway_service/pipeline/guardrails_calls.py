"""Input and retrieved-context checks through the guardrails service; both fail closed."""

import logging
from collections.abc import Sequence

from llmsuite.common.v1 import common_pb2
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite.retrieval.v1 import retrieval_pb2
from llmsuite_common.rules.findings import Finding

from ..api.errors import ApiError
from ..api.guardrails_summary import current_summary
from .backend_call import backend_call
from .deadline import Deadline

log = logging.getLogger(__name__)


def policy_violation(reasons: Sequence[guardrails_pb2.Reason | Finding], default: str) -> ApiError:
    """The client's error for a block, from guardrails' reasons or the output rail's findings."""
    blocking = [r for r in reasons if r.action in ("block", "")]
    text = "; ".join(r.message for r in blocking if r.message) or default
    return ApiError(400, f"content policy violation: {text}", code="content_policy_violation")


async def check_input(
    stub: guardrails_pb2_grpc.GuardrailsServiceStub,
    context: common_pb2.RequestContext,
    messages: list[common_pb2.ChatMessage],
    deadline: Deadline,
) -> tuple[list[common_pb2.ChatMessage], str]:
    """The messages to send on (the originals, or their redacted copies) and the policy version
    that judged them. Raises on a block."""
    request = guardrails_pb2.CheckInputRequest(context=context, messages=messages)
    reply = await backend_call(stub.CheckInput, request, deadline, "guardrails")
    summary = current_summary()
    if summary is not None:
        outcome = {guardrails_pb2.VERDICT_BLOCK: "block"}.get(
            reply.verdict, "redact" if reply.redacted else "allow"
        )
        summary.add(
            "input",
            outcome,
            [t.check for t in reply.timings],
            reply.elapsed_us,
            reply.policy_version,
            codes=[r.code for r in reply.reasons],
        )
    if reply.verdict == guardrails_pb2.VERDICT_BLOCK:
        raise policy_violation(reply.reasons, "the input was blocked")
    if reply.verdict != guardrails_pb2.VERDICT_ALLOW:
        # Fail closed: a guardrails reply without a verdict is a bug, not a pass.
        log.error("guardrails returned no verdict", extra={"verdict": reply.verdict})
        raise ApiError(500, "internal error", code="internal_error")
    if reply.redacted and len(reply.redacted_messages) == len(messages):
        redacted = zip(messages, reply.redacted_messages, strict=True)
        return [_with_content(m, r.content) for m, r in redacted], reply.policy_version
    return messages, reply.policy_version


def _with_content(message: common_pb2.ChatMessage, content: str) -> common_pb2.ChatMessage:
    """The message as sent, with guardrails' redacted text: its images and tool fields stay."""
    out = common_pb2.ChatMessage()
    out.CopyFrom(message)
    out.content = content
    return out


async def check_context(
    stub: guardrails_pb2_grpc.GuardrailsServiceStub,
    context: common_pb2.RequestContext,
    chunks: list[retrieval_pb2.Chunk],
    deadline: Deadline,
) -> list[retrieval_pb2.Chunk]:
    """The retrieved chunks that may reach the prompt; poisoned ones are dropped and logged."""
    if not chunks:
        return chunks
    request = guardrails_pb2.CheckContextRequest(
        context=context,
        chunks=[
            guardrails_pb2.ContextChunk(chunk_id=c.chunk_id, source_id=c.source_id, text=c.text)
            for c in chunks
        ],
    )
    reply = await backend_call(stub.CheckContext, request, deadline, "guardrails")
    summary = current_summary()
    if summary is not None:
        outcome = f"dropped:{len(reply.dropped)}" if reply.dropped else "allow"
        summary.add(
            "context", outcome, [t.check for t in reply.timings], reply.elapsed_us, reply.policy_version
        )
    for dropped in reply.dropped:
        log.warning(
            "retrieved chunk dropped by guardrails",
            extra={
                "chunk_id": dropped.chunk_id,
                "source_id": dropped.source_id,
                "codes": [r.code for r in dropped.reasons],
            },
        )
    return [chunks[i] for i in reply.kept if i < len(chunks)]
