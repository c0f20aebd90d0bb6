"""Request id carried through logs for the current task."""

import contextvars
import uuid

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

REQUEST_ID_METADATA_KEY = "x-request-id"


def new_request_id() -> str:
    return uuid.uuid4().hex
