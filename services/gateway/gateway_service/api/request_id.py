"""Which client-sent request ids are kept: short, and safe to echo into headers and logs."""

import re

from llmsuite_common.redaction import redact
from llmsuite_common.request_context import new_request_id

MAX_REQUEST_ID_LENGTH = 128
_SANE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def sane_request_id(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    # A credential pasted as a request id would otherwise be echoed and stored verbatim.
    return value if _SANE.fullmatch(value) and redact(value) == value else None


def request_id_from(value: str | bytes | None) -> str:
    return sane_request_id(value) or new_request_id()
