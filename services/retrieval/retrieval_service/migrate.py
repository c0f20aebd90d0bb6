"""`python -m retrieval_service.migrate`: creates the retrieval schema (pgvector, tables, indexes)
and exits.

Run before the services start (the chart's pre-install/pre-upgrade Job) with a RETRIEVAL_DATABASE_URL
whose role may create tables and the vector extension; the services then run with
RETRIEVAL_DATABASE_MIGRATE_ON_START=false and a role that only reads and writes rows. It loads the
embedding model (local or RETRIEVAL_EMBEDDING_URL) to learn the vectors' dimension. Safe to run
again: everything is created only where missing, under an advisory lock. It also builds the vector
index again if a bulk load dropped it and did not finish.
"""

import asyncio
import logging
import sys

from llmsuite_common.logs import setup_logging
from prometheus_client import CollectorRegistry

from .app import RetrievalApp
from .db import SCHEMA_VERSION
from .settings import RetrievalSettings

log = logging.getLogger("retrieval_service.migrate")


def main() -> int:
    settings = RetrievalSettings()
    setup_logging("retrieval-migrate", settings.log_level)
    asyncio.run(RetrievalApp(settings, registry=CollectorRegistry()).migrate())
    log.info("schema current", extra={"version": SCHEMA_VERSION})
    return 0


if __name__ == "__main__":
    sys.exit(main())
