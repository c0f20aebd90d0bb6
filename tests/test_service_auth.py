"""Every gRPC service verifies its caller: the suite's real processes, called directly.

A call without a credential, with an expired one, one signed by another key or one made for
another service is UNAUTHENTICATED; a valid token for another organization than the request names
is PERMISSION_DENIED; health checks and reflection need none.
"""

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail
from llmsuite_common.local_auth import LocalAuthority

from tests.conftest import FAKE_MODEL

CTX = common_pb2.RequestContext(org_id="default", request_id="auth-test")


def _retrieval(channel: grpc.Channel, metadata) -> object:
    return retrieval_pb2_grpc.RetrievalServiceStub(channel).ListCollections(
        retrieval_pb2.ListCollectionsRequest(context=CTX), timeout=30, metadata=metadata
    )


def _guardrails(channel: grpc.Channel, metadata) -> object:
    return guardrails_pb2_grpc.GuardrailsServiceStub(channel).CheckInput(
        guardrails_pb2.CheckInputRequest(
            context=CTX, messages=[common_pb2.ChatMessage(role="user", content="hi")]
        ),
        timeout=30,
        metadata=metadata,
    )


def _generation(channel: grpc.Channel, metadata) -> object:
    return generation_pb2_grpc.GenerationServiceStub(channel).Complete(
        generation_pb2.GenerateRequest(
            context=CTX,
            model=FAKE_MODEL,
            messages=[common_pb2.ChatMessage(role="user", content="hi")],
            max_tokens=8,
        ),
        timeout=30,
        metadata=metadata,
    )


CALLS = {"retrieval": _retrieval, "guardrails": _guardrails, "generation": _generation}


def _call(suite, service: str, metadata) -> grpc.RpcError | None:
    with grpc.insecure_channel(f"127.0.0.1:{getattr(suite.cfg.ports, service)}") as channel:
        try:
            CALLS[service](channel, metadata)
        except grpc.RpcError as err:
            return err
    return None


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.mark.parametrize("service", sorted(CALLS))
def test_a_valid_token_for_the_named_org_is_served(suite, service):
    assert _call(suite, service, suite.grpc_auth(service)) is None


@pytest.mark.parametrize("service", sorted(CALLS))
def test_no_credential_is_unauthenticated(suite, service):
    err = _call(suite, service, ())
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert read_error_detail(err).code == "missing_credential"
    # Not a bearer token at all.
    err = _call(suite, service, (("authorization", "Basic dXNlcjpwYXNz"),))
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("service", sorted(CALLS))
def test_another_orgs_token_is_permission_denied(suite, service):
    err = _call(suite, service, suite.grpc_auth(service, "someone-else"))
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    detail = read_error_detail(err)
    assert detail.code == "org_mismatch" and detail.param == "context.org_id"


@pytest.mark.parametrize("service", sorted(CALLS))
def test_expired_forged_and_misdirected_tokens_are_unauthenticated(suite, service):
    issuer = suite.authority.issuer
    caller = suite.authority.caller("default")
    now = time.time()
    expired = issuer.sign(caller, service, now=now - 3600, expires=now - 600)
    forged = LocalAuthority().issuer.token(caller, service)
    other = "generation" if service != "generation" else "retrieval"
    misdirected = issuer.token(caller, other)
    for token, code in (
        (expired, "token_expired"),
        (forged, "invalid_token"),
        (misdirected, "wrong_audience"),
        ("not-a-jwt", "invalid_token"),
    ):
        err = _call(suite, service, _bearer(token))
        assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, code
        assert read_error_detail(err).code == code
    # The service still answers the next, valid call.
    assert _call(suite, service, suite.grpc_auth(service)) is None


@pytest.mark.parametrize("service", sorted(CALLS))
def test_health_and_reflection_need_no_credential(suite, service):
    with grpc.insecure_channel(f"127.0.0.1:{getattr(suite.cfg.ports, service)}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert any(name.startswith("llmsuite.") for name in names)
