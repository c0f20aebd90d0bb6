"""What the verified caller of a call may do here: its tenant, its scopes, its collections.

The organization comes from the caller's token (call_auth.tenant_of), never from the request
alone; each RPC names the scope it needs, and a token limited to collection-name prefixes reaches
only those collections:
- read: Search, ListCollections, GetChunk, Embed;
- write: CreateCollection (which never replaces an existing one);
- admin: Ingest and IngestStream (an ingest replaces documents of the same id, overwriting what
  others stored), DeleteDocuments, DeleteCollection.
"""

from typing import Any

from llmsuite_common.call_auth import current_caller, tenant_of
from llmsuite_common.service_tokens import RETRIEVAL_ADMIN, RETRIEVAL_READ, RETRIEVAL_WRITE, Caller

READ, WRITE, ADMIN = RETRIEVAL_READ, RETRIEVAL_WRITE, RETRIEVAL_ADMIN


def authorize(context: Any, scope: str) -> tuple[Caller, str]:
    """(caller, tenant) of this call, when its token carries `scope`."""
    tenant = tenant_of(context)
    caller = current_caller()
    caller.require_scope(scope)
    return caller, tenant
