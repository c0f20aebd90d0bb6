"""The gateway's copy of each organization's output rules follows the policy guardrails reports."""

from types import SimpleNamespace

from gateway_service.pipeline.deadline import Deadline
from gateway_service.pipeline.output_rail import OutputPolicies
from guardrails_service.app import GuardrailsApp
from guardrails_service.metrics import GuardrailsMetrics
from guardrails_service.settings import GuardrailsSettings
from llmsuite.common.v1 import common_pb2
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc
from prometheus_client import CollectorRegistry

from tests.service_auth import AUTHORITY, serving, tenant_channel

CTX = common_pb2.RequestContext(request_id="r1", org_id="acme")


async def checked_version(stub: guardrails_pb2_grpc.GuardrailsServiceStub) -> str:
    reply = await stub.CheckInput(
        guardrails_pb2.CheckInputRequest(
            context=CTX, messages=[common_pb2.ChatMessage(role="user", content="hi")]
        ),
        timeout=5,
    )
    return reply.policy_version


async def test_a_policy_change_reaches_the_rail_on_the_next_request(tmp_path):
    policy = tmp_path / "acme.yaml"
    policy.write_text("version: one\noutput: {deny: {terms: [zebra]}}\n")
    app = GuardrailsApp(
        GuardrailsSettings(guardrails_policy_dir=tmp_path), GuardrailsMetrics(CollectorRegistry())
    )
    async with serving(app) as port, tenant_channel(f"127.0.0.1:{port}", AUTHORITY, app.audience) as channel:
        stub = guardrails_pb2_grpc.GuardrailsServiceStub(channel)
        policies = OutputPolicies(SimpleNamespace(guardrails=stub))
        first_version = await checked_version(stub)
        first = await policies.scanner(CTX, first_version, Deadline(5))
        assert first.version == first_version
        assert [m.check for m in first.scan("a zebra")] == ["deny"]
        # The same version again: the compiled rules are reused, no second fetch.
        assert await policies.scanner(CTX, first_version, Deadline(5)) is first

        policy.write_text("version: two\noutput: {deny: {terms: [giraffe]}}\n")
        app.policies.refresh()
        second_version = await checked_version(stub)
        assert second_version != first_version
        second = await policies.scanner(CTX, second_version, Deadline(5))
        assert second.version == second_version
        assert [m.check for m in second.scan("a giraffe")] == ["deny"] and not second.scan("a zebra")
