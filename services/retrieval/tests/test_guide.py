"""The guide's grpcurl examples name real methods, and their JSON bodies parse as those methods' requests."""

import re
from pathlib import Path

from google.protobuf import json_format
from llmsuite.retrieval.v1 import retrieval_pb2

GUIDE = Path(__file__).resolve().parents[1] / "README.md"
SERVICE = retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"]
_CALL = re.compile(
    r"grpcurl (?P<flags>[^\n]*?)-d '(?P<body>[^']*)'\s*\\\s*\n\s*\S+ "
    r"(?P<method>llmsuite\.retrieval\.v1\.RetrievalService/\w+)",
    re.S,
)


def test_every_grpcurl_body_parses_as_its_request():
    calls = list(_CALL.finditer(GUIDE.read_text()))
    assert len(calls) >= 4
    for call in calls:
        method = SERVICE.methods_by_name[call["method"].rsplit("/", 1)[1]]
        request = retrieval_pb2.__dict__[method.input_type.name]()
        json_format.Parse(call["body"], request)
        # The tenant is the token's: every call sends one, and no body names an organization.
        assert '-H "$AUTH"' in call["flags"], call["method"]
        assert request.context.org_id == ""
