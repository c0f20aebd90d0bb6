"""PII and secrets corpus: exact detections and redactions, and no false positives on the negatives."""

import pytest
from guardrails_service.engine import Guard
from llmsuite_common.rules.detectors import PII_ORDER, find_pii, find_secrets, iban_ok, luhn_ok
from llmsuite_common.rules.policy import Policy

POSITIVE_PII = [
    ("email", "john.doe+tag@example.co.uk"),
    ("email", "a_b@sub.mail.example.org"),
    ("card", "4111 1111 1111 1111"),  # Visa test number
    ("card", "5500-0000-0000-0004"),  # Mastercard
    ("card", "378282246310005"),  # Amex
    ("card", "6011111111111117"),  # Discover
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "FR1420041010050500013M02606"),
    ("iban", "NL91ABNA0417164300"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(555) 123-4567"),
    ("phone", "+1-202-555-0143"),
    ("national_id", "123-45-6789"),
    ("national_id", "AB 12 34 56 C"),
]

NEGATIVE_PII = [
    "4111 1111 1111 1112",  # fails Luhn
    "1234 5678 9012 3456",  # fails Luhn
    "DE89 3704 0044 0532 0130 01",  # fails mod-97
    "GB82WEST12345698765431",  # fails mod-97
    "order 123456789012 shipped",  # bare digits, no separators
    "the year 2024 and 1999",
    "version 1.2.3.4 of the tool",
    "call me at noon",
    "user@localhost",  # no TLD
    "served from 192.168.100.200 today",  # an IPv4 address
    "due 2024-11-28",
    "pgvector 0.8.0 on Postgres 16",
    "GET /v1/chat/completions HTTP/1.1",
    "price: 1,299.00 EUR",
]

POSITIVE_SECRETS = [
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("github_token", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    ("api_key", "sk-proj-abcdEFGH1234ijklMNOP5678qrst"),
    ("stripe_key", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("slack_token", "xoxb-123456789012-abcdefABCDEF"),
    ("google_api_key", "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("high_entropy_string", "aZ3kP9qL2mX8vR5tY1wE7uI4oN6bC0dF"),
]

NEGATIVE_SECRETS = [
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a sha256 digest
    "the token bucket refills every second",
    "password reset link sent",
    "use sk-learn for classic models",
    "internationalization_and_localization_guidelines",
    "https://example.com/docs/getting-started/installation",
]


@pytest.mark.parametrize(("kind", "value"), POSITIVE_PII)
def test_each_pii_kind_is_found_exactly(kind, value):
    text = f"please use {value} for this."
    (span,) = find_pii(text, PII_ORDER)
    assert span.kind == kind
    assert text[span.start : span.end] == value


@pytest.mark.parametrize("text", NEGATIVE_PII)
def test_no_pii_false_positives(text):
    assert find_pii(text, PII_ORDER) == []


@pytest.mark.parametrize(("kind", "value"), POSITIVE_SECRETS)
def test_each_secret_kind_is_found_exactly(kind, value):
    text = f"config: {value} end"
    (span,) = find_secrets(text)
    assert span.kind == kind
    assert text[span.start : span.end] == value


@pytest.mark.parametrize("text", NEGATIVE_SECRETS)
def test_no_secret_false_positives(text):
    assert find_secrets(text) == []


def test_assigned_password_is_a_secret_by_entropy():
    text = 'db password="Xk9#mQ2vLp" and port=5432'
    (span,) = find_secrets(text)
    assert text[span.start : span.end] == "Xk9#mQ2vLp"


def test_validators():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # wrong length for DE


def test_input_redaction_is_exact_and_reported_without_the_values():
    guard = Guard(Policy())
    result = guard.check_input(
        [
            "mail john.doe@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE",
            "and IBAN GB82WEST12345698765432",
        ]
    )
    assert not result.blocked
    assert result.redacted == [
        "mail [REDACTED:EMAIL], card [REDACTED:CARD], key [REDACTED:AWS_ACCESS_KEY]",
        "and IBAN [REDACTED:IBAN]",
    ]
    messages = " ".join(f.message for f in result.findings)
    assert "example.com" not in messages and "4111" not in messages and "AKIA" not in messages
    assert {(f.check, f.action, f.count) for f in result.findings} == {
        ("secrets", "redact", 1),
        ("pii", "redact", 3),
    }


def test_clean_input_is_left_alone():
    result = Guard(Policy()).check_input(["What is the capital of France?"])
    assert result.findings == [] and result.redacted is None
    assert [t.check for t in result.timings] == ["size", "deny", "secrets", "pii", "injection"]
