import grpc
import orjson
from gateway_service.api.errors import ApiError, envelope, error_response, from_grpc
from llmsuite.common.v1 import common_pb2
from llmsuite_common.errors import ERROR_DETAIL_TRAILER


def rpc_error(code: grpc.StatusCode, details: str = "", trailers: tuple = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


def detail_trailer(code: str, message: str, param: str = "") -> tuple:
    detail = common_pb2.ErrorDetail(code=code, message=message, param=param)
    return ((ERROR_DETAIL_TRAILER, detail.SerializeToString()),)


def test_envelope_has_exactly_the_openai_fields():
    err = ApiError(400, "bad temperature", code="invalid_value", param="temperature")
    assert envelope(err) == {
        "error": {
            "message": "bad temperature",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }


def test_types_follow_the_status():
    assert ApiError(401, "x").type == "invalid_request_error"
    assert ApiError(429, "x").type == "rate_limit_error"
    assert ApiError(503, "x").type == "server_error"
    assert ApiError(400, "x", type_="custom").type == "custom"


def test_error_response_is_json_with_the_status():
    response = error_response(ApiError(404, "nope", code="model_not_found", param="model"))
    assert response.status_code == 404
    assert response.media_type == "application/json"
    assert orjson.loads(response.body)["error"]["code"] == "model_not_found"
    assert "retry-after" not in response.headers


def test_every_429_carries_retry_after():
    assert error_response(ApiError(429, "slow down")).headers["retry-after"] == "1"
    assert error_response(ApiError(429, "slow down", retry_after=7)).headers["retry-after"] == "7"


def test_grpc_statuses_map_to_http_statuses():
    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.FAILED_PRECONDITION: 400,
        # The gateway's own service token was refused: its deployment's fault, not the client's.
        grpc.StatusCode.UNAUTHENTICATED: 500,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        grpc.StatusCode.INTERNAL: 500,
        grpc.StatusCode.UNKNOWN: 500,
        grpc.StatusCode.DATA_LOSS: 500,
    }
    for code, status in expected.items():
        assert from_grpc(rpc_error(code), "retrieval").status == status, code


def test_service_error_detail_is_shown_verbatim():
    err = from_grpc(
        rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT, "raw", detail_trailer("empty_query", "query is empty", "query")
        ),
        "retrieval",
    )
    assert (err.status, err.message, err.code, err.param) == (400, "query is empty", "empty_query", "query")


def test_transport_details_are_not_shown():
    raw = "failed to connect to all addresses; last error: ipv4:127.0.0.1:50063: Connection refused"
    err = from_grpc(rpc_error(grpc.StatusCode.UNAVAILABLE, raw), "generation")
    assert err.status == 503
    assert "127.0.0.1" not in err.message
    assert err.message == "the generation service is unavailable"


def test_not_found_from_generation_is_model_not_found():
    err = from_grpc(rpc_error(grpc.StatusCode.NOT_FOUND, "x"), "generation")
    assert (err.status, err.code, err.param) == (404, "model_not_found", "model")


def test_not_found_elsewhere_keeps_the_service_code():
    err = from_grpc(
        rpc_error(
            grpc.StatusCode.NOT_FOUND, "x", detail_trailer("collection_not_found", "no such collection")
        ),
        "retrieval",
    )
    assert (err.status, err.code) == (404, "collection_not_found")


def test_rate_limit_takes_retry_after_from_trailer_or_param():
    from_trailer = from_grpc(
        rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "", (("retry-after", "3"),)), "generation"
    )
    assert (from_trailer.status, from_trailer.retry_after) == (429, 3)
    from_param = from_grpc(
        rpc_error(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
            detail_trailer("rate_limit_exceeded", "upstream rate limit reached", "retry_after=2"),
        ),
        "generation",
    )
    assert (from_param.retry_after, from_param.param, from_param.code) == (2, None, "rate_limit_exceeded")
    assert from_grpc(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), "generation").retry_after == 1
