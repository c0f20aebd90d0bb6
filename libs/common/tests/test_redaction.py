import json
import logging

import pytest
from llmsuite_common.logs import JsonFormatter
from llmsuite_common.redaction import redact

CANARIES = [
    "sk-test-CANARYabcdef123456",
    "sk-proj-CANARY0123456789abcdef",
    "llms_CANARY_0123456789abcdef",
    "AKIACANARY0123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
    "canary.person@example.com",
]


@pytest.mark.parametrize("secret", CANARIES)
def test_known_secret_shapes_are_masked(secret):
    assert secret not in redact(f"upstream said: {secret} failed")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def-ghi",
        '{"api_key": "plain-value-123"}',
        "password=hunter2&user=x",
        "postgresql://app:s3cr3t@db:5432/llm",
    ],
)
def test_key_value_and_url_credentials_are_masked(text):
    out = redact(text)
    for secret in ("abc.def-ghi", "plain-value-123", "hunter2", "s3cr3t"):
        assert secret not in out


def test_ordinary_text_is_untouched():
    text = "retrieved 4 chunks for collection handbook in 12 ms; model gemma-3-270m"
    assert redact(text) == text


def test_formatter_masks_message_and_extra_fields():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "calling with %s", ("sk-live-CANARY1234567890",), None
    )
    record.upstream_url = "https://user:CANARYPASS@api.example/v1"
    line = JsonFormatter("test").format(record)
    parsed = json.loads(line)
    assert "CANARY" not in line
    assert parsed["msg"].startswith("calling with ")
