"""The edge's admission and settlement of one request (edge/request_edge.py), with in-process stores
and no HTTP: what entry refuses or replays, and what exit records, stores, frees and reconciles."""

import asyncio
from typing import Any

import pytest
from gateway_service.api.errors import ApiError, close_error_note, open_error_note
from gateway_service.api.schemas import ChatCompletionRequest
from gateway_service.edge.admission import EdgeChecks
from gateway_service.edge.auth import Identity
from gateway_service.edge.idempotency import Idempotency
from gateway_service.edge.kv import MemoryStore
from gateway_service.edge.limits import LimitConfig, Limiter
from gateway_service.edge.policy import Policy
from gateway_service.edge.ratelimit import MemoryLimitStore
from gateway_service.edge.request_edge import EdgeRequest, RequestEdge
from gateway_service.edge.result_cache import ResultCache
from gateway_service.edge.usage import UsageRecorder
from gateway_service.pipeline.chat import Screened, StreamTally
from gateway_service.pipeline.deadline import Deadline
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge

RESERVED = 1000
FINAL = generation_pb2.Final(
    finish_reason="stop", usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12)
)
SCREENED = Screened(common_pb2.RequestContext(), [], policy_version="policy-1")


class RecordedUsage(UsageRecorder):
    """Keeps each request-log row's arguments instead of queueing it."""

    def __init__(self) -> None:
        super().__init__(MemoryStore(), {})
        self.rows: list[dict[str, Any]] = []

    def record(
        self, identity: Identity, model: str, prompt: int, completion: int, request_id: str, **kw: Any
    ) -> None:
        self.rows.append({"model": model, "prompt": prompt, "completion": completion, **kw})


def make_edge() -> tuple[RequestEdge, RecordedUsage, Gauge]:
    registry = CollectorRegistry()
    usage = RecordedUsage()
    streams = Gauge("streams", "open streams", registry=registry)
    config = LimitConfig(window_seconds=60, ip_rpm=0, lease_seconds=60, failure_mode="open")
    edge = RequestEdge(
        limiter=Limiter(MemoryLimitStore(), config),
        idempotency=Idempotency(MemoryStore(), ttl_seconds=60, pending_seconds=60),
        cache=ResultCache(MemoryStore(), Counter("lookups", "cache lookups", ["outcome"], registry=registry)),
        checks=EdgeChecks(max_tokens_cap=0),
        usage=usage,
        streams_in_flight=streams,
        reserved_completion_tokens=RESERVED,
    )
    return edge, usage, streams


# A second request's reservation fits only once the first one's was reconciled with what it used.
TOKENS = Identity(org_id="org", key_id="tokens", policy=Policy(key_tpm=int(RESERVED * 1.5)))
# One stream at a time.
STREAMS = Identity(org_id="org", key_id="streams", policy=Policy(key_max_streams=1))


def request(
    identity: Identity = TOKENS, *, stream: bool = False, key: str | None = None, **extra: Any
) -> EdgeRequest:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hello"}], "temperature": 0, "stream": stream}
    )
    return EdgeRequest(
        identity, body, "m", "10.0.0.1", Deadline(60), stream=stream, idempotency_key=key, **extra
    )


async def settled() -> None:
    """Lets the work run off the response path (limiter.run_later) finish."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_whole_answer_is_recorded_stored_and_its_tokens_reconciled_on_exit():
    edge, usage, _ = make_edge()
    async with edge.admit(request(key="k1")) as admitted:
        assert admitted.replay is None
        assert await admitted.cached(SCREENED) is None
        assert admitted.headers["x-cache"] == "miss"
        admitted.generating()
        admitted.answered(FINAL, "the answer", b'{"answer": 1}')
        assert usage.rows == []
    assert [(r["prompt"], r["completion"]) for r in usage.rows] == [(5, 7)]
    assert (
        usage.rows[0]["outcome"].answer == "the answer" and usage.rows[0]["outcome"].finish_reason == "stop"
    )
    await settled()
    # The reservation was given back: the next request's fits.
    async with edge.admit(request()) as again:
        hit = await again.cached(SCREENED)
        assert hit is not None and hit.body == b'{"answer": 1}' and hit.headers["x-cache"] == "hit"
    await settled()
    async with edge.admit(request(key="k1")) as replayed:
        assert replayed.replay is not None and replayed.replay.body == b'{"answer": 1}'
        assert replayed.replay.headers["idempotency-replayed"] == "true"
    assert len(usage.rows) == 1


async def test_a_failure_is_logged_frees_its_idempotency_key_and_returns_its_reservation():
    edge, usage, _ = make_edge()
    with pytest.raises(ApiError):
        async with edge.admit(request(key="k2")) as admitted:
            admitted.generating()
            raise ApiError(502, "upstream failed", code="upstream_error")
    assert [(r["outcome"].status, r["outcome"].error_code) for r in usage.rows] == [(502, "upstream_error")]
    await settled()
    async with edge.admit(request(key="k2")) as again:
        assert again.replay is None


async def test_a_route_that_logs_only_its_streams_leaves_no_row_for_a_failure():
    edge, usage, _ = make_edge()
    with pytest.raises(ApiError):
        async with edge.admit(request(STREAMS, stream=True, log_failures=False)):
            raise ApiError(400, "blocked", code="content_policy_violation")
    assert usage.rows == []
    await settled()
    # Its stream lease was returned.
    async with edge.admit(request(STREAMS, stream=True)):
        pass


async def test_entry_refuses_before_anything_is_held():
    edge, usage, _ = make_edge()
    async with edge.admit(request(STREAMS, key="k3")):
        with pytest.raises(ApiError) as err:
            await edge.admit(request(STREAMS, key="k3")).__aenter__()
        assert err.value.code == "idempotency_key_in_use"
    # The duplicate was logged as a failure; the first request answered nothing, so left no row.
    assert [r["outcome"].status for r in usage.rows] == [409]


async def test_a_stream_settles_when_it_closes_not_when_the_route_returns():
    edge, usage, streams = make_edge()
    tally = StreamTally()
    async with edge.admit(request(STREAMS, stream=True, key="k4")) as admitted:
        assert await admitted.cached(SCREENED) is None
        stream = admitted.stream(tally)
    assert usage.rows == [] and streams._value.get() == 1
    await settled()
    with pytest.raises(ApiError) as err:
        async with edge.admit(request(STREAMS, stream=True)):
            pass
    assert err.value.code == "concurrency"
    tally.deltas, tally.parts, tally.final = 2, ["a", "b"], FINAL
    await stream.complete((b"data: {}\n\n", b"data: [DONE]\n\n"))
    stream.close()
    stream.close()
    await settled()
    assert [(r["prompt"], r["completion"], r["cancelled"]) for r in usage.rows] == [(5, 7, False)]
    assert usage.rows[0]["outcome"].stream and usage.rows[0]["outcome"].answer == "ab"
    assert streams._value.get() == 0
    async with edge.admit(request(STREAMS, stream=True, key="k4")) as replayed:
        assert replayed.replay is not None
    await settled()
    async with edge.admit(request(STREAMS, stream=True)) as cached:
        assert await cached.cached(SCREENED) is not None


async def test_a_stream_closed_before_its_final_message_is_cancelled_and_frees_its_key():
    edge, usage, _ = make_edge()
    note = open_error_note()
    tally = StreamTally(deltas=3)
    async with edge.admit(request(stream=True, key="k5")) as admitted:
        stream = admitted.stream(tally)
    stream.close()
    assert close_error_note(note) == "cancelled"
    await settled()
    (row,) = usage.rows
    assert row["cancelled"] and row["completion"] == 3 and row["prompt"] > 0
    async with edge.admit(request(stream=True, key="k5")) as again:
        assert again.replay is None
