import grpc
import httpx
import orjson
import pytest

from generation_service.upstream_errors import (
    error_for_status,
    error_for_stream_error,
    error_for_transport,
    retry_after_seconds,
)


def status_error(status, body=b"", headers=None):
    return error_for_status(status, body, headers or {}, model="gemma-3-270m", secrets=("sk-canary-123",))


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (422, grpc.StatusCode.INVALID_ARGUMENT),
        (413, grpc.StatusCode.INVALID_ARGUMENT),
        (404, grpc.StatusCode.NOT_FOUND),
        (401, grpc.StatusCode.UNAVAILABLE),
        (403, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (502, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_status_mapping(status, code):
    assert status_error(status).status == code


def test_bad_request_keeps_the_upstream_message_and_param_but_scrubs_secrets():
    body = orjson.dumps(
        {"error": {"message": "max_tokens too large\n(key sk-canary-123)", "param": "max_tokens"}}
    )
    error = status_error(400, body)
    assert "max_tokens too large" in error.message
    assert "sk-canary-123" not in error.message
    assert "\n" not in error.message
    assert error.param == "max_tokens"


def test_fastapi_validation_detail_is_understood():
    body = orjson.dumps({"detail": [{"loc": ["body", "messages"], "msg": "field required"}]})
    assert "field required" in status_error(422, body).message


def test_long_or_unparsable_upstream_messages_are_cut_or_dropped():
    assert len(status_error(400, orjson.dumps({"error": {"message": "x" * 5000}})).message) < 400
    assert status_error(400, b"<html>Traceback ...</html>").message == "upstream rejected the request"


def test_credentials_failure_does_not_blame_the_caller():
    error = status_error(401, orjson.dumps({"error": {"message": "Incorrect API key sk-canary-123"}}))
    assert error.message == "upstream rejected credentials"


def test_rate_limit_keeps_retry_after():
    error = status_error(429, headers={"retry-after": "2"})
    assert error.param == "retry_after=2"
    assert "2 s" in error.message
    assert status_error(429).param == ""


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 2
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), grpc.StatusCode.UNAVAILABLE),
        (httpx.ConnectTimeout("slow"), grpc.StatusCode.UNAVAILABLE),
        (httpx.PoolTimeout("busy"), grpc.StatusCode.UNAVAILABLE),
        (httpx.ReadTimeout("stalled"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (httpx.RemoteProtocolError("peer closed"), grpc.StatusCode.UNAVAILABLE),
        (httpx.ReadError("reset"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_transport_mapping(exc, code):
    assert error_for_transport(exc).status == code


def test_stream_error_object():
    error = error_for_stream_error({"message": "out of memory", "type": "server_error"})
    assert error.status == grpc.StatusCode.UNAVAILABLE
    assert "out of memory" in error.message
    assert error_for_stream_error("plain text").message.endswith("plain text")
