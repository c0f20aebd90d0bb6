"""The gateway's HTTP API, fuzzed from its own OpenAPI document (schemathesis).

Every operation /openapi.json lists gets `knobs.EXAMPLES` generated requests, valid and invalid
(wrong types, missing and extra fields, out-of-range values, odd strings), plus schemathesis's
boundary cases, with the bootstrap admin key, and a tenth as many without any key. Checks on each
answer: never a 5xx; its status is one the document lists; what the document describes, it
matches (every error is the documented ErrorResponse envelope, as application/json; success
bodies are not described); and no request takes longer than `knobs.REQUEST_TIMEOUT_SECONDS`.

Not covered here: the WebSocket route (not in the document) and stateful sequences (the document
declares no links, and its success responses declare no body schema to infer them from).
Streamed chat completions are included: the fake upstream ends a stream at once, so the whole SSE
body is read and checked like any other answer.
"""

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.knobs import EXAMPLES, REQUEST_TIMEOUT_SECONDS, SEED

# Without a key every answer is the same 401 after the same few steps: a tenth of the examples.
ANONYMOUS_EXAMPLES = max(10, EXAMPLES // 10)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

# The run's own settings: the test module's, not whatever a schemathesis.toml nearby says.
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _config(examples: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # A failure's reproduction shows the request as sent: the suite's key is made per run.
            "output": {"sanitization": {"enabled": False}},
            "request-timeout": REQUEST_TIMEOUT_SECONDS,
            "generation": {
                "mode": "all",
                "max-examples": examples,
                # Never a made-up bearer token: a wrong key counts against this address's
                # authentication failures, and past their limit the address is refused for a while.
                "with-security-parameters": False,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


def gateway_openapi() -> dict:
    """The document the gateway serves, built in-process: the operations are known when tests are
    collected, before the suite runs (test_the_served_document_is_the_one_fuzzed holds them equal)."""
    from gateway_service.app import create_app
    from gateway_service.pipeline.clients import BackendClients, BackendTargets
    from gateway_service.settings import GatewaySettings

    settings = GatewaySettings(
        gateway_api_key="unused",
        gateway_redis_url="",
        gateway_cache_redis_url="",
        gateway_admin_api_enabled=True,
    )
    unused = "dns:///127.0.0.1:9"
    targets = BackendTargets(unused, unused, unused)
    clients = BackendClients(targets, max_message_bytes=settings.grpc_max_message_bytes)
    return create_app(settings, clients).openapi()


OPENAPI = gateway_openapi()
admin = schemathesis.openapi.from_dict(OPENAPI, config=_config(EXAMPLES))
anonymous = schemathesis.openapi.from_dict(OPENAPI, config=_config(ANONYMOUS_EXAMPLES))


def test_the_served_document_is_the_one_fuzzed(suite):
    served = requests.get(f"{suite.gateway_url}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS)
    assert served.status_code == 200
    assert served.json() == OPENAPI


@admin.parametrize()
@HYPOTHESIS
def test_admin_key_never_gets_a_server_error(case, suite):
    case.call_and_validate(
        base_url=suite.gateway_url,
        headers={"Authorization": f"Bearer {suite.api_key}"},
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


@anonymous.parametrize()
@HYPOTHESIS
def test_no_key_is_refused_before_anything_else(case, suite):
    response = case.call_and_validate(
        base_url=suite.gateway_url, checks=CHECKS, timeout=REQUEST_TIMEOUT_SECONDS
    )
    # Every documented operation needs a key: nothing is parsed, looked up or served without one.
    assert response.status_code == 401, (case.method, case.formatted_path, response.status_code)
