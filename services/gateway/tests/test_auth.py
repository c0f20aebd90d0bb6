from gateway_service.edge.auth import bearer_token, is_protected, key_id_for


def test_bearer_token_parsing():
    assert bearer_token(b"Bearer sk-1") == b"sk-1"
    assert bearer_token(b"bearer   sk-1 ") == b"sk-1"
    assert bearer_token(b"Basic sk-1") is None
    assert bearer_token(b"Bearer") is None
    assert bearer_token(b"Bearer ") is None
    assert bearer_token(None) is None


def test_only_the_api_is_protected():
    assert is_protected("/v1/chat/completions")
    assert is_protected("/v1")
    assert not is_protected("/v10/models")
    assert not is_protected("/healthz")
    assert not is_protected("/metrics")


def test_key_id_is_stable_and_does_not_contain_the_key():
    key = "sk-very-secret-value"
    assert key_id_for(key) == key_id_for(key)
    assert key not in key_id_for(key)
    assert key_id_for(key) != key_id_for(key + "x")
