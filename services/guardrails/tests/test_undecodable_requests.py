"""Every guardrails RPC, the output stream included, answers INVALID_ARGUMENT for a message that
does not parse (invalid UTF-8 in a proto3 string), and the server answers the next call."""

import grpc
import pytest
from guardrails_service.app import GuardrailsApp
from guardrails_service.metrics import GuardrailsMetrics
from guardrails_service.settings import GuardrailsSettings
from llmsuite.common.v1 import common_pb2
from llmsuite.guardrails.v1 import guardrails_pb2 as pb
from llmsuite.guardrails.v1 import guardrails_pb2_grpc
from llmsuite_common.errors import read_error_detail
from prometheus_client import CollectorRegistry

from tests.service_auth import auth, serving

SERVICE = "/llmsuite.guardrails.v1.GuardrailsService/"
MARK = "\x01XYZ\x01"
LONE_SURROGATE = b"\x01\xed\xa0\x80\x01"  # as long as MARK, so every length prefix still holds


def invalid_utf8(message) -> bytes:  # type: ignore[no-untyped-def]
    data = message.SerializeToString()
    assert data.count(MARK.encode()) == 1
    return data.replace(MARK.encode(), LONE_SURROGATE)


@pytest.fixture
async def target(tmp_path):
    # "acme" reads deltas in place; "slowpoke" (a time-based hold-back) reads them in a task of its own.
    (tmp_path / "acme.yaml").write_text("output: {hold_back_tokens: 16}\n")
    (tmp_path / "slowpoke.yaml").write_text("output: {hold_back_tokens: 1000, hold_back_ms: 20}\n")
    app = GuardrailsApp(
        GuardrailsSettings(guardrails_policy_dir=tmp_path), GuardrailsMetrics(CollectorRegistry())
    )
    async with serving(app) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


def failed_to_parse(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    detail = read_error_detail(err)
    assert detail is not None and (detail.code, detail.message) == (
        "invalid_message",
        "request message could not be parsed",
    )


async def still_answers(channel: grpc.aio.Channel, org: str) -> None:
    stub = guardrails_pb2_grpc.GuardrailsServiceStub(channel)
    reply = await stub.CheckInput(
        pb.CheckInputRequest(
            context=common_pb2.RequestContext(org_id=org),
            messages=[common_pb2.ChatMessage(role="user", content="hi")],
        ),
        metadata=auth("guardrails", org),
        timeout=10,
    )
    assert reply.verdict == pb.VERDICT_ALLOW


CTX = common_pb2.RequestContext(org_id="someone")
UNARY = {
    "CheckInput": pb.CheckInputRequest(
        context=CTX, messages=[common_pb2.ChatMessage(role="user", content=MARK)]
    ),
    "CheckContext": pb.CheckContextRequest(context=CTX, chunks=[pb.ContextChunk(chunk_id="c", text=MARK)]),
    "GetOutputPolicy": pb.GetOutputPolicyRequest(
        context=common_pb2.RequestContext(org_id="someone", user_id=MARK)
    ),
    "ValidateStructuredOutput": pb.ValidateStructuredOutputRequest(context=CTX, text=MARK, json_schema=""),
}


@pytest.mark.parametrize("method", sorted(UNARY))
async def test_unary_rpc_with_invalid_utf8_is_invalid_argument(target, method: str):
    call = target.unary_unary(SERVICE + method, request_serializer=lambda b: b, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(invalid_utf8(UNARY[method]), metadata=auth("guardrails", "someone"), timeout=10)
    failed_to_parse(info.value)
    await still_answers(target, "someone")


def start(org: str) -> pb.OutputStreamRequest:
    return pb.OutputStreamRequest(start=pb.OutputStreamStart(context=common_pb2.RequestContext(org_id=org)))


@pytest.mark.parametrize(
    ("org", "bad_index"),
    [("acme", 0), ("acme", 2), ("slowpoke", 2)],
    ids=["first-message", "later-delta", "later-delta-read-by-its-own-task"],
)
async def test_output_stream_with_invalid_utf8_is_invalid_argument(target, org: str, bad_index: int):
    call = target.stream_stream(
        SERVICE + "CheckOutputStream",
        request_serializer=lambda b: b,
        response_deserializer=pb.OutputStreamResponse.FromString,
    )
    messages = [start(org), pb.OutputStreamRequest(delta="Hello "), pb.OutputStreamRequest(delta="there")]
    messages[bad_index] = (
        pb.OutputStreamRequest(
            start=pb.OutputStreamStart(context=common_pb2.RequestContext(org_id=org, user_id=MARK))
        )
        if bad_index == 0
        else pb.OutputStreamRequest(delta=MARK)
    )

    # Written one by one and no further than the bad message: the server ends the call there, and
    # a write after that would fail on the client's side, not the server's.
    stream = call(metadata=auth("guardrails", org), timeout=10)
    for i, message in enumerate(messages[: bad_index + 1]):
        await stream.write(invalid_utf8(message) if i == bad_index else message.SerializeToString())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for reply in stream:
            assert reply.WhichOneof("item") != "done"  # the stream must not end as if it were whole
    failed_to_parse(info.value)
    await still_answers(target, org)
