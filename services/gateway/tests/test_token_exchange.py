"""The scopes a token exchange grants: never more than the key's, and each with those below it."""

import pytest
from gateway_service.api.errors import ApiError
from gateway_service.api.routes.tokens import requested_caller
from gateway_service.edge.auth import Identity
from gateway_service.edge.policy import Policy


def key(
    role: str = "member", scopes: frozenset[str] = frozenset(), prefixes: tuple[str, ...] = ()
) -> Identity:
    return Identity("acme", "key_1", role=role, policy=Policy(scopes=scopes), collection_prefixes=prefixes)


def test_asking_for_admin_brings_write_and_read_as_on_the_key_itself():
    caller = requested_caller(key("admin"), "retrieval:admin")
    assert caller.scopes == {"retrieval:admin", "retrieval:write", "retrieval:read"}


def test_narrowing_keeps_the_keys_org_and_prefixes():
    caller = requested_caller(key(prefixes=("team-a-",)), "retrieval:read")
    assert caller.scopes == {"retrieval:read"}
    assert (caller.org_id, caller.key_id, caller.collection_prefixes) == ("acme", "key_1", ("team-a-",))


@pytest.mark.parametrize(
    ("scope", "status"), [("retrieval:write", 403), ("retrieval:everything", 400), ("", 403)]
)
def test_more_than_the_key_holds_or_unknown_scopes_are_refused(scope, status):
    with pytest.raises(ApiError) as err:
        requested_caller(key(scopes=frozenset({"retrieval:read"})), scope)
    assert err.value.status == status
