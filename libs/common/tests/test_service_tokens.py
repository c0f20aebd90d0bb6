"""Service tokens: signing, verification, expiry, rotation and the retrieval scope rule."""

import json
import stat

import pytest
from llmsuite_common.errors import PermissionDenied, Unauthenticated
from llmsuite_common.service_keys import JWKS_FILE, SIGNING_KEY_FILE, kubernetes_secrets, write_keys
from llmsuite_common.service_tokens import (
    RETRIEVAL_ADMIN,
    RETRIEVAL_READ,
    RETRIEVAL_WRITE,
    Caller,
    PublicKeys,
    SigningKey,
    TokenIssuer,
    TokenVerifier,
    retrieval_scopes,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


CALLER = Caller("acme", "key_1", "member", frozenset({RETRIEVAL_READ}), ("team-a-",))


def test_a_signed_token_verifies_into_the_same_caller_and_is_cached():
    clock = Clock()
    key = SigningKey.generate()
    token = TokenIssuer(key, clock=clock).token(CALLER, "retrieval")
    verifier = TokenVerifier(key.public_keys(), "retrieval", clock=clock)
    caller = verifier.verify(token)
    assert (caller.org_id, caller.key_id, caller.role) == ("acme", "key_1", "member")
    assert caller.scopes == {RETRIEVAL_READ} and caller.collection_prefixes == ("team-a-",)
    assert verifier.verify(token) is caller  # the second call is a dictionary lookup


def test_the_issuer_reuses_a_token_until_its_refresh_margin():
    clock = Clock()
    issuer = TokenIssuer(SigningKey.generate(), ttl_seconds=300, refresh_seconds=60, clock=clock)
    first = issuer.token(CALLER, "retrieval")
    clock.now += 200
    assert issuer.token(CALLER, "retrieval") == first
    assert issuer.token(CALLER, "guardrails") != first  # one per audience
    clock.now += 50  # 50 s left: inside the margin
    assert issuer.token(CALLER, "retrieval") != first


def test_an_expired_token_is_refused_even_when_it_was_verified_before():
    clock = Clock()
    key = SigningKey.generate()
    token = TokenIssuer(key, ttl_seconds=60, refresh_seconds=10, clock=clock).token(CALLER, "retrieval")
    verifier = TokenVerifier(key.public_keys(), "retrieval", clock=clock, leeway_seconds=5)
    verifier.verify(token)
    clock.now += 66
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert err.value.code == "token_expired"
    fresh = TokenVerifier(key.public_keys(), "retrieval", clock=clock, leeway_seconds=5)
    with pytest.raises(Unauthenticated):
        fresh.verify(token)


def test_wrong_key_wrong_audience_and_garbage_are_unauthenticated():
    key, other = SigningKey.generate(), SigningKey.generate()
    verifier = TokenVerifier(key.public_keys(), "retrieval")
    for token, code in (
        (TokenIssuer(other).token(CALLER, "retrieval"), "invalid_token"),
        (TokenIssuer(key).token(CALLER, "generation"), "wrong_audience"),
        ("a.b.c", "invalid_token"),
        ("", "invalid_token"),
    ):
        with pytest.raises(Unauthenticated) as err:
            verifier.verify(token)
        assert err.value.code == code


def test_a_token_whose_signature_was_altered_is_refused():
    key = SigningKey.generate()
    token = TokenIssuer(key).token(CALLER, "retrieval")
    head, body, signature = token.split(".")
    tampered = ".".join((head, body, ("A" if signature[0] != "A" else "B") + signature[1:]))
    with pytest.raises(Unauthenticated):
        TokenVerifier(key.public_keys(), "retrieval").verify(tampered)


def test_rotation_accepts_both_keys_then_only_the_new_one(tmp_path):
    old = write_keys(tmp_path)
    old_token = TokenIssuer(old).token(CALLER, "retrieval")
    new = write_keys(tmp_path, rotate=True)
    jwks = json.loads((tmp_path / JWKS_FILE).read_text())
    assert [k["kid"] for k in jwks["keys"]] == [new.kid, old.kid]
    verifier = TokenVerifier(PublicKeys.from_file(tmp_path / JWKS_FILE), "retrieval")
    verifier.verify(old_token)
    verifier.verify(TokenIssuer(SigningKey.from_file(tmp_path / SIGNING_KEY_FILE)).token(CALLER, "retrieval"))

    write_keys(tmp_path, prune=True)
    pruned = TokenVerifier(PublicKeys.from_file(tmp_path / JWKS_FILE), "retrieval")
    with pytest.raises(Unauthenticated):
        pruned.verify(old_token)
    assert stat.S_IMODE((tmp_path / SIGNING_KEY_FILE).stat().st_mode) == 0o600
    secrets = kubernetes_secrets(tmp_path, "llmsuite")
    assert "name: llmsuite-token-signing-key" in secrets and "name: llmsuite-token-public-keys" in secrets


def test_retrieval_scopes_each_imply_the_ones_below():
    assert retrieval_scopes("admin") == {RETRIEVAL_READ, RETRIEVAL_WRITE, RETRIEVAL_ADMIN}
    assert retrieval_scopes("member") == {RETRIEVAL_READ, RETRIEVAL_WRITE}
    assert retrieval_scopes("member", [RETRIEVAL_READ]) == {RETRIEVAL_READ}
    assert retrieval_scopes("member", [RETRIEVAL_ADMIN]) == {RETRIEVAL_READ, RETRIEVAL_WRITE, RETRIEVAL_ADMIN}
    assert retrieval_scopes("member", ["chat:everything"]) == {RETRIEVAL_READ, RETRIEVAL_WRITE}


def test_a_caller_is_held_to_its_scopes_and_prefixes():
    with pytest.raises(PermissionDenied):
        CALLER.require_scope(RETRIEVAL_WRITE)
    CALLER.require_collection("team-a-notes")
    with pytest.raises(PermissionDenied) as err:
        CALLER.require_collection("team-b-notes")
    assert err.value.code == "collection_forbidden"
