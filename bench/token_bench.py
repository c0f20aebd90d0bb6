"""What service tokens add per request: the credential work of one backend call, on each side.

Measured in process with the code the chain runs: the gateway's OutboundCredentials (a token for
the request's key from the issuer's cache) and a service's CallAuthenticator (the bearer token
found in the call's metadata, verified from the verifier's cache). Signing and a first
verification happen once per key and audience every few minutes; they are shown apart.
"""

import time
from collections.abc import Callable

from llmsuite_common.call_auth import CallAuthenticator, OutboundCredentials, acting_as
from llmsuite_common.service_tokens import Caller, SigningKey, TokenIssuer, TokenVerifier, default_scopes

from .config import BenchSettings

# Backend calls of one chat request: CheckInput and Complete (non-stream) or Generate (stream);
# GetOutputPolicy only when the policy version changes.
CALLS_PER_REQUEST = 2


class _Metadatum:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


def _cpu_us(fn: Callable[[], object], runs: int) -> float:
    fn()
    started = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - started) / runs * 1e6


def run(cfg: BenchSettings) -> dict:
    key = SigningKey.generate()
    issuer = TokenIssuer(key)
    caller = Caller("bench-org", "key_bench", "member", default_scopes("member"))
    credentials = OutboundCredentials(issuer)
    authenticator = CallAuthenticator(TokenVerifier(key.public_keys(), "generation"))
    with acting_as(caller):
        header = credentials.authorization("generation") or ""
        client_us = _cpu_us(lambda: credentials.authorization("generation"), 200_000)
    metadata = (
        _Metadatum("x-request-id", "r1"),
        _Metadatum("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
        _Metadatum("authorization", header),
    )
    server_us = _cpu_us(lambda: authenticator.caller(metadata), 200_000)
    sign_us = _cpu_us(
        lambda: issuer.sign(caller, "generation", now=time.time(), expires=time.time() + 300), 2_000
    )
    tokens = [
        issuer.sign(caller, "generation", now=time.time(), expires=time.time() + 300 + i)
        for i in range(2_000)
    ]
    cold = TokenVerifier(key.public_keys(), "generation")
    started = time.process_time()
    for token in tokens:
        cold.verify(token)
    verify_us = (time.process_time() - started) / len(tokens) * 1e6
    per_request_us = CALLS_PER_REQUEST * (client_us + server_us)
    lines = [
        "The credential path of one backend call, CPU in process (µs); signing and a first "
        "verification happen once per key and service every few minutes.",
        "",
        "| step | µs |",
        "|---|---:|",
        f"| gateway: token for the call (issuer cache) | {client_us:.2f} |",
        f"| service: bearer token verified (verifier cache) | {server_us:.2f} |",
        f"| per chat request ({CALLS_PER_REQUEST} backend calls, both sides) | {per_request_us:.2f} |",
        f"| signing a token (once per key, service and ~4 min) | {sign_us:.1f} |",
        f"| first verification of a token (once per token and replica) | {verify_us:.1f} |",
    ]
    return {
        "client_us": client_us,
        "server_us": server_us,
        "per_request_us": per_request_us,
        "sign_us": sign_us,
        "first_verify_us": verify_us,
        "lines": lines,
    }


if __name__ == "__main__":
    print("\n".join(run(BenchSettings())["lines"]))
