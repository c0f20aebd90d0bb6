import aiohttp
import grpc
import orjson
import pytest
from generation_service.upstream_errors import (
    error_for_status,
    error_for_stream_error,
    error_for_transport,
    is_retryable,
    pushback_seconds,
    retry_after_seconds,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL


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


def test_a_503_keeps_retry_after_and_stays_retryable():
    error = status_error(503, headers={"retry-after": "7"})
    assert (error.status, error.code, error.param) == (
        grpc.StatusCode.UNAVAILABLE,
        "upstream_error",
        "retry_after=7",
    )
    assert pushback_seconds(error) == 7 and is_retryable(error)
    plain = status_error(503)
    assert (plain.param, pushback_seconds(plain)) == ("", None)
    # Only a 429's and a 503's Retry-After ask for a pause.
    assert pushback_seconds(status_error(500, headers={"retry-after": "7"})) is None


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "7"}) == 7
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 2
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def _connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


def _bad_response() -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL("http://u/v1/chat/completions"), "POST", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ClientResponseError(info, (), status=400, message="Invalid response status")


@pytest.mark.parametrize(
    ("exc", "pool_exhausted", "status", "code"),
    [
        (_connector_error(), False, grpc.StatusCode.UNAVAILABLE, "upstream_unreachable"),
        (aiohttp.ConnectionTimeoutError("slow"), False, grpc.StatusCode.UNAVAILABLE, "upstream_unreachable"),
        (aiohttp.ConnectionTimeoutError("busy"), True, grpc.StatusCode.UNAVAILABLE, "upstream_busy"),
        (aiohttp.SocketTimeoutError("stalled"), False, grpc.StatusCode.DEADLINE_EXCEEDED, "upstream_timeout"),
        (aiohttp.ServerDisconnectedError(), False, grpc.StatusCode.UNAVAILABLE, "upstream_disconnected"),
        (aiohttp.ClientPayloadError("cut"), False, grpc.StatusCode.UNAVAILABLE, "upstream_disconnected"),
        (aiohttp.ClientOSError(104, "reset"), False, grpc.StatusCode.UNAVAILABLE, "upstream_disconnected"),
        (_bad_response(), False, grpc.StatusCode.UNAVAILABLE, "upstream_protocol_error"),
        (aiohttp.ClientError("other"), False, grpc.StatusCode.UNAVAILABLE, "upstream_error"),
    ],
)
def test_transport_mapping(exc, pool_exhausted, status, code):
    error = error_for_transport(exc, pool_exhausted=pool_exhausted)
    assert (error.status, error.code) == (status, code)
    assert is_retryable(error)


def test_stream_error_object():
    error = error_for_stream_error({"message": "out of memory", "type": "server_error"})
    assert error.status == grpc.StatusCode.UNAVAILABLE
    assert "out of memory" in error.message
    assert error_for_stream_error("plain text").message.endswith("plain text")
